/**
 * Copies of what the hot routes look up on every request (verified API keys,
 * stream schemas), held in process so a request costs a Map lookup, not a
 * database read. A copy is trusted for `ttlMs`, counted from when its load
 * began, so no copy is older than that: the staleness bound the README states
 * (a revoked key, another replica's new schema version) holds exactly.
 *
 * A copy used in the second half of its time is loaded again in the
 * background, so a key in steady use never finds its copy expired: its
 * requests neither wait for the read nor leave the hot routes for it. A copy
 * nobody uses simply expires. One load per key at a time; past `capacity`
 * copies the oldest goes first.
 *
 * With `staleIfErrorMs`, an expired copy is not forgotten at once: while
 * loading it again fails (the database is down), `get` answers it for up to
 * that long past its expiry (stale-if-error, RFC 5861), so an outage longer
 * than the TTL does not turn every request away. `peekUnsafe` never answers a
 * stale copy: its callers go through `get`, which tries the load first.
 */
import { Clock, Effect, FiberSet, type Scope } from "effect"
import { makeSingleFlight } from "./SingleFlight.ts"

export interface RefreshingCache<A, E> {
  /** The copy held for `key` (`undefined`: none, or expired), synchronously. */
  readonly peekUnsafe: (key: string) => A | undefined
  /** The copy held for `key`, or one loaded now. A failed load is not remembered. */
  readonly get: (key: string) => Effect.Effect<A, E>
  /** Holds `value` for `key` from now on: what this process itself just wrote. */
  readonly set: (key: string, value: A) => void
}

interface Copy<A> {
  value: A
  expiresAt: number
  refreshing: boolean
}

export const makeRefreshingCache = <A, E>(options: {
  readonly ttlMs: number
  readonly capacity: number
  readonly load: (key: string) => Effect.Effect<A, E>
  /**
   * Whether a loaded value may replace the copy held (default: always). A load
   * that began before this process `set` a newer value must not undo it.
   */
  readonly replaces?: (loaded: A, held: A) => boolean
  /** How long past its expiry a copy is still answered when loading it fails (default 0: never). */
  readonly staleIfErrorMs?: number
}): Effect.Effect<RefreshingCache<A, E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { capacity, load, replaces, ttlMs } = options
    const staleIfErrorMs = options.staleIfErrorMs ?? 0
    // Captured here: peek runs outside fibers, on the hot routes.
    const clock = yield* Clock.clockWith(Effect.succeed)
    // Refreshes run in the background, owned by the scope the cache is made in.
    const runInBackground = yield* FiberSet.makeRuntime<never>()
    const copies = new Map<string, Copy<A>>()
    const singleFlight = makeSingleFlight<A, E>()

    const hold = (key: string, value: A, expiresAt: number, loaded: boolean) => {
      const held = copies.get(key)
      if (held !== undefined) {
        held.refreshing = false
        if (loaded && replaces !== undefined && !replaces(value, held.value)) return
        held.value = value
        held.expiresAt = expiresAt
        return
      }
      // Oldest first out: a Map iterates in insertion order.
      if (copies.size >= capacity) copies.delete(copies.keys().next().value!)
      copies.set(key, { value, expiresAt, refreshing: false })
    }

    const loadAndHold = (key: string): Effect.Effect<A, E> =>
      singleFlight(
        key,
        Effect.suspend(() => {
          const began = clock.currentTimeMillisUnsafe()
          return Effect.tap(load(key), (value) => Effect.sync(() => hold(key, value, began + ttlMs, true)))
        })
      )

    const peek = (key: string): A | undefined => {
      const copy = copies.get(key)
      if (copy === undefined) return undefined
      const left = copy.expiresAt - clock.currentTimeMillisUnsafe()
      if (left <= 0) {
        if (-left >= staleIfErrorMs) copies.delete(key)
        return undefined
      }
      if (left < ttlMs / 2 && !copy.refreshing) {
        // Best effort: if the load fails, the copy expires and the next use loads through.
        copy.refreshing = true
        runInBackground(Effect.ignore(loadAndHold(key)))
      }
      return copy.value
    }

    return {
      peekUnsafe: peek,
      get: (key) =>
        Effect.suspend(() => {
          const held = peek(key)
          if (held !== undefined) return Effect.succeed(held)
          if (staleIfErrorMs === 0) return loadAndHold(key)
          return Effect.catch(loadAndHold(key), (error) => {
            const stale = copies.get(key)
            return stale !== undefined && clock.currentTimeMillisUnsafe() - stale.expiresAt < staleIfErrorMs
              ? Effect.succeed(stale.value)
              : Effect.fail(error)
          })
        }),
      set: (key, value) => hold(key, value, clock.currentTimeMillisUnsafe() + ttlMs, false)
    }
  })
