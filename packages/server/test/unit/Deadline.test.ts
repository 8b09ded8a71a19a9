/** A call's deadline: the call's own answer in time, `onTimeout`'s past it, the call interrupted either way it is cut. */
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber } from "effect"
import { withDeadline } from "../../src/platform/runtime/Deadline.ts"

const late = () => Effect.fail("late" as const)

describe("withDeadline", () => {
  it.live("answers with the call's success or failure when it ends in time, synchronous or not", () =>
    Effect.gen(function*() {
      expect(yield* withDeadline(Effect.succeed(1), 1_000, late)).toBe(1)
      expect(yield* Effect.exit(withDeadline(Effect.fail("boom"), 1_000, late))).toEqual(Exit.fail("boom"))
      expect(yield* withDeadline(Effect.as(Effect.sleep("5 millis"), 2), 1_000, late)).toBe(2)
    }))

  it.live("past the deadline answers onTimeout and interrupts the call without waiting for it", () =>
    Effect.gen(function*() {
      const released = yield* Deferred.make<void>()
      const call = Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(released, undefined)))
      const exit = yield* Effect.exit(withDeadline(call, 20, late))
      expect(exit).toEqual(Exit.fail("late"))
      yield* Deferred.await(released)
    }))

  it.live("interrupting the caller interrupts the call", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const released = yield* Deferred.make<void>()
      const call = Deferred.succeed(started, undefined).pipe(
        Effect.andThen(Effect.never),
        Effect.onInterrupt(() => Deferred.succeed(released, undefined))
      )
      const caller = yield* Effect.forkChild(withDeadline(call, 60_000, late))
      yield* Deferred.await(started)
      yield* Fiber.interrupt(caller)
      yield* Deferred.await(released)
    }))

  it.live("runs the call with the caller's services", () =>
    Effect.gen(function*() {
      const Name = Context.Reference<string>("test/Name", { defaultValue: () => "none" })
      const seen = yield* withDeadline(Effect.service(Name), 1_000, late).pipe(Effect.provideService(Name, "caller"))
      expect(seen).toBe("caller")
    }))
})
