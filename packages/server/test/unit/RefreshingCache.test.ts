/**
 * In-process copies for the hot routes (keys, stream schemas): never older than
 * the TTL counted from when their load began, loaded again in the background
 * while in use, dropped when unused, and never undone by a load that began
 * before this process set a newer value.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { makeRefreshingCache } from "../../src/platform/cache/RefreshingCache.ts"

const TTL = 1_000

/** A source whose value per key the test sets, counting loads; `gate` holds loads while set. */
const makeSource = () => {
  const values = new Map<string, number>()
  const state = { loads: 0, answered: 0, gate: undefined as Deferred.Deferred<void> | undefined, failing: false }
  const load = (key: string) =>
    Effect.suspend(() => {
      state.loads++
      const value = values.get(key) ?? 0
      const held = state.gate === undefined ? Effect.void : Deferred.await(state.gate)
      return Effect.flatMap(held, () => {
        state.answered++
        return state.failing ? Effect.fail("down" as const) : Effect.succeed(value)
      })
    })
  return { values, state, load }
}

/** Lets forked background loads run. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 5; i++) yield* Effect.yieldNow
})

describe("makeRefreshingCache", () => {
  it.effect("keeps a key in steady use known across many TTLs and shows a change within one", () =>
    Effect.gen(function*() {
      const source = makeSource()
      source.values.set("k", 1)
      const cache = yield* makeRefreshingCache({ ttlMs: TTL, capacity: 10, load: source.load })
      expect(cache.peekUnsafe("k")).toBeUndefined()
      expect(yield* cache.get("k")).toBe(1)
      for (let t = 0; t < 10 * TTL; t += 150) {
        yield* TestClock.adjust(Duration.millis(150))
        expect(cache.peekUnsafe("k")).toBeDefined()
        yield* settle
      }
      // About two loads per TTL, not one per use.
      expect(source.state.loads).toBeGreaterThanOrEqual(10)
      expect(source.state.loads).toBeLessThanOrEqual(25)
      source.values.set("k", 2)
      for (let t = 0; t <= TTL; t += 150) {
        yield* TestClock.adjust(Duration.millis(150))
        cache.peekUnsafe("k")
        yield* settle
      }
      expect(cache.peekUnsafe("k")).toBe(2)
    }))

  it.effect("drops a copy nobody uses after the TTL", () =>
    Effect.gen(function*() {
      const source = makeSource()
      const cache = yield* makeRefreshingCache({ ttlMs: TTL, capacity: 10, load: source.load })
      yield* cache.get("k")
      yield* TestClock.adjust(Duration.millis(TTL))
      expect(cache.peekUnsafe("k")).toBeUndefined()
      expect(source.state.loads).toBe(1)
    }))

  it.effect("counts a copy's time from when its load began, so a slow load does not stretch the bound", () =>
    Effect.gen(function*() {
      const source = makeSource()
      const cache = yield* makeRefreshingCache({ ttlMs: TTL, capacity: 10, load: source.load })
      source.state.gate = yield* Deferred.make<void>()
      const loading = yield* Effect.forkChild(cache.get("k"))
      yield* settle
      yield* TestClock.adjust(Duration.millis(300)) // the read takes 300 ms
      yield* Deferred.succeed(source.state.gate, undefined)
      source.state.gate = undefined
      expect(yield* Fiber.join(loading)).toBe(0)
      // Its copy ends a TTL after the read began, not after it answered.
      yield* TestClock.adjust(Duration.millis(TTL - 300))
      expect(cache.peekUnsafe("k")).toBeUndefined()
    }))

  it.effect("remembers no failed load, and keeps a copy whose background load failed until it expires", () =>
    Effect.gen(function*() {
      const source = makeSource()
      const cache = yield* makeRefreshingCache({ ttlMs: TTL, capacity: 10, load: source.load })
      source.state.failing = true
      expect(yield* Effect.exit(cache.get("k"))).toEqual(Exit.fail("down"))
      expect(cache.peekUnsafe("k")).toBeUndefined()
      source.state.failing = false
      expect(yield* cache.get("k")).toBe(0)
      source.state.failing = true
      yield* TestClock.adjust(Duration.millis(TTL / 2 + 1))
      expect(cache.peekUnsafe("k")).toBe(0) // starts a load, which fails
      yield* settle
      expect(cache.peekUnsafe("k")).toBe(0)
      yield* TestClock.adjust(Duration.millis(TTL / 2))
      expect(cache.peekUnsafe("k")).toBeUndefined()
    }))

  it.effect("keeps what this process set when a load that began before lands after it", () =>
    Effect.gen(function*() {
      const source = makeSource()
      source.values.set("k", 1)
      const cache = yield* makeRefreshingCache({
        ttlMs: TTL,
        capacity: 10,
        load: source.load,
        replaces: (loaded, held) => loaded >= held
      })
      yield* cache.get("k")
      yield* TestClock.adjust(Duration.millis(TTL / 2 + 1))
      source.state.gate = yield* Deferred.make<void>()
      expect(cache.peekUnsafe("k")).toBe(1) // a background load of 1 starts, held at the gate
      yield* settle
      cache.set("k", 2)
      yield* Deferred.succeed(source.state.gate, undefined)
      while (source.state.answered < 2) yield* Effect.yieldNow
      yield* settle
      expect(cache.peekUnsafe("k")).toBe(2)
    }))

  it.effect("holds at most `capacity` copies, dropping the oldest", () =>
    Effect.gen(function*() {
      const source = makeSource()
      const cache = yield* makeRefreshingCache({ ttlMs: TTL, capacity: 2, load: source.load })
      yield* cache.get("a")
      yield* cache.get("b")
      yield* cache.get("c")
      expect([cache.peekUnsafe("a"), cache.peekUnsafe("b"), cache.peekUnsafe("c")]).toEqual([undefined, 0, 0])
    }))

  it.effect("answers an expired copy while loading it fails, for up to staleIfErrorMs past its expiry", () =>
    Effect.gen(function*() {
      const source = makeSource()
      source.values.set("k", 1)
      const cache = yield* makeRefreshingCache({ ttlMs: TTL, capacity: 10, load: source.load, staleIfErrorMs: 3 * TTL })
      yield* cache.get("k")
      source.state.failing = true
      yield* TestClock.adjust(Duration.millis(TTL + 1))
      // Expired: the hot path's peek does not answer it, but get does while the load fails.
      expect(cache.peekUnsafe("k")).toBeUndefined()
      expect(yield* cache.get("k")).toBe(1)
      yield* TestClock.adjust(Duration.millis(2 * TTL))
      expect(yield* cache.get("k")).toBe(1)
      // Past the stale bound, the failure comes through.
      yield* TestClock.adjust(Duration.millis(TTL))
      expect(yield* Effect.exit(cache.get("k"))).toEqual(Exit.fail("down"))
      // And a load that works again replaces the stale copy.
      source.state.failing = false
      source.values.set("k", 2)
      expect(yield* cache.get("k")).toBe(2)
      expect(cache.peekUnsafe("k")).toBe(2)
    }))

  it.effect("answers no expired copy when loading fails without staleIfErrorMs", () =>
    Effect.gen(function*() {
      const source = makeSource()
      const cache = yield* makeRefreshingCache({ ttlMs: TTL, capacity: 10, load: source.load })
      yield* cache.get("k")
      source.state.failing = true
      yield* TestClock.adjust(Duration.millis(TTL + 1))
      expect(yield* Effect.exit(cache.get("k"))).toEqual(Exit.fail("down"))
    }))
})
