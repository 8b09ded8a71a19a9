/**
 * One load per key at a time, for caches that fill on a miss: callers that miss
 * while a load for their key is under way wait for it instead of starting their
 * own. The load runs on a fiber of its own, so it finishes for the waiters even
 * if the caller that started it goes away.
 */
import { Deferred, Effect } from "effect"

export const makeSingleFlight = <A, E>() => {
  const inFlight = new Map<string, Deferred.Deferred<A, E>>()
  return <R>(key: string, load: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.suspend(() => {
      const pending = inFlight.get(key)
      if (pending !== undefined) return Deferred.await(pending)
      const done = Deferred.makeUnsafe<A, E>()
      inFlight.set(key, done)
      return load.pipe(
        Effect.onExit((exit) =>
          Effect.sync(() => {
            inFlight.delete(key)
            Deferred.doneUnsafe(done, exit)
          })
        ),
        Effect.forkDetach,
        Effect.flatMap(() => Deferred.await(done))
      )
    })
}
