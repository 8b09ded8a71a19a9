/**
 * A deadline for one call: `Effect.timeoutOrElse` without the race. Effect's
 * timeout races the call against a sleep, which forks two fibers per call;
 * here the call runs in one fiber and a plain timer cuts it short. On the
 * database and Redis calls of every uncached read and every group commit that
 * difference shows in profiles (docs/PERFORMANCE.md).
 *
 * Past `millis` the call is interrupted (not awaited: a hung connection must
 * not hold the caller) and `onTimeout` answers instead. Interrupting the
 * caller interrupts the call.
 */
import { Effect, type Exit } from "effect"

export const withDeadline = <A, E, R, A2, E2>(
  self: Effect.Effect<A, E, R>,
  millis: number,
  onTimeout: () => Effect.Effect<A2, E2>
): Effect.Effect<A | A2, E | E2, R> =>
  Effect.withFiber((parent) =>
    Effect.callback<A | A2, E | E2>((resume) => {
      // The caller's context (services, span, log annotations) goes with the call.
      const call = Effect.runForkWith(parent.context)(self as Effect.Effect<A, E, never>)
      const timer = setTimeout(() => {
        stop()
        call.interruptUnsafe(parent.id)
        resume(onTimeout())
      }, millis)
      const stop = call.addObserver((exit: Exit.Exit<A, E>) => {
        clearTimeout(timer)
        resume(exit)
      })
      return Effect.sync(() => {
        clearTimeout(timer)
        stop()
        call.interruptUnsafe(parent.id)
      })
    })
  )
