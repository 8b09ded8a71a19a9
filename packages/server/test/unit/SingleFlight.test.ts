/** One load per key at a time: concurrent misses share it, and it outlives the caller that started it. */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { makeSingleFlight } from "../../src/platform/cache/SingleFlight.ts"

describe("makeSingleFlight", () => {
  it.effect("runs one load for concurrent callers of a key, one per key, and a new one after it ends", () =>
    Effect.gen(function*() {
      const singleFlight = makeSingleFlight<string, never>()
      const loads: Array<string> = []
      const gate = yield* Deferred.make<void>()
      const load = (key: string) =>
        singleFlight(key, Effect.andThen(Effect.sync(() => loads.push(key)), Effect.as(Deferred.await(gate), key)))
      const fibers = yield* Effect.forEach(["a", "a", "a", "b"], (key) => Effect.forkChild(load(key)))
      yield* Effect.yieldNow
      yield* Deferred.succeed(gate, undefined)
      expect(yield* Effect.forEach(fibers, Fiber.join)).toEqual(["a", "a", "a", "b"])
      expect(loads.toSorted()).toEqual(["a", "b"])
      expect(yield* load("a")).toBe("a")
      expect(loads.filter((k) => k === "a")).toHaveLength(2)
    }))

  it.effect("finishes for the waiters when the caller that started the load is interrupted", () =>
    Effect.gen(function*() {
      const singleFlight = makeSingleFlight<string, never>()
      const gate = yield* Deferred.make<void>()
      const load = singleFlight("k", Effect.as(Deferred.await(gate), "loaded"))
      const first = yield* Effect.forkChild(load)
      yield* Effect.yieldNow
      const second = yield* Effect.forkChild(load)
      yield* Effect.yieldNow
      yield* Fiber.interrupt(first)
      yield* Deferred.succeed(gate, undefined)
      expect(yield* Fiber.join(second)).toBe("loaded")
    }))
})
