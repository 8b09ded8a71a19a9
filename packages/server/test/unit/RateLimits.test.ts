/**
 * The rate limiter's leases (src/auth/RateLimits.ts): a key in steady use is
 * served from its lease without a gap, the lease topped up in the background
 * before it runs dry or lapses, and the replica never holds more than one
 * lease's worth of the shared bucket's tokens.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Layer } from "effect"
import { TestClock } from "effect/testing"
import { leaseSize, RateLimits } from "../../src/auth/RateLimits.ts"
import { CacheStore } from "../../src/platform/cache/CacheStore.ts"
import { AppConfig } from "../../src/platform/config/AppConfig.ts"

const LIMIT = { rps: 1_000, burst: 1_000 }
const SIZE = leaseSize(LIMIT) // 50

const limiter = RateLimits.layer.pipe(
  Layer.provideMerge(CacheStore.layerMemory()),
  Layer.provide(AppConfig.layerWith())
)

/** Lets forked top-ups run. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 5; i++) yield* Effect.yieldNow
})

/** Tokens the shared bucket holds now, read by taking none. */
const sharedTokens = (keyId: string) =>
  Effect.gen(function*() {
    const cache = yield* CacheStore
    return (yield* cache.takeTokens(`ratelimit:${keyId}`, LIMIT, 0)).tokens
  })

describe("RateLimits leases", () => {
  it.effect("serve a key in steady use without a gap, topped up before they run dry", () =>
    Effect.gen(function*() {
      const limits = yield* RateLimits
      // No lease yet: the first request is `take`'s, and leases the rest.
      expect(limits.takeLeasedUnsafe("k", LIMIT)).toBeUndefined()
      expect((yield* limits.take("k", LIMIT)).allowed).toBe(true)
      // Far more requests than one lease holds, with time for the background top-ups.
      let served = 0
      for (let i = 0; i < 5 * SIZE; i++) {
        const decision = limits.takeLeasedUnsafe("k", LIMIT)
        expect(decision?.allowed, `request ${i}`).toBe(true)
        served++
        if (i % 5 === 0) yield* settle
      }
      yield* settle
      // What left the shared bucket: the requests answered, and at most one lease more.
      const taken = LIMIT.burst - (yield* sharedTokens("k"))
      expect(taken).toBeGreaterThanOrEqual(served + 1)
      expect(taken).toBeLessThanOrEqual(served + 1 + SIZE)
    }).pipe(Effect.provide(limiter)))

  it.effect("renew a lease in use before its second is over", () =>
    Effect.gen(function*() {
      const limits = yield* RateLimits
      yield* limits.take("k", LIMIT)
      yield* TestClock.adjust(Duration.millis(800))
      expect(limits.takeLeasedUnsafe("k", LIMIT)?.allowed).toBe(true)
      yield* settle
      // 1.2 s after the lease was taken: without the renewal it would have lapsed.
      yield* TestClock.adjust(Duration.millis(400))
      const decision = limits.takeLeasedUnsafe("k", LIMIT)
      expect(decision?.allowed).toBe(true)
      // The shared bucket refilled meanwhile; what is said to be left never passes the burst.
      expect(decision!.remaining).toBeLessThanOrEqual(LIMIT.burst)
      expect(decision!.remaining).toBeGreaterThan(LIMIT.burst - 2 * SIZE)
    }).pipe(Effect.provide(limiter)))

  it.effect("let a lease lapse when its key goes quiet", () =>
    Effect.gen(function*() {
      const limits = yield* RateLimits
      yield* limits.take("k", LIMIT)
      yield* TestClock.adjust(Duration.millis(1_001))
      expect(limits.takeLeasedUnsafe("k", LIMIT)).toBeUndefined()
    }).pipe(Effect.provide(limiter)))

  it.effect("leave a lease as it is when the shared bucket is empty", () =>
    Effect.gen(function*() {
      const limits = yield* RateLimits
      const small = { rps: 1, burst: 100 } // leases 5 (5 % of the burst)
      const size = leaseSize(small)
      yield* limits.take("k", small)
      // Another replica empties the shared bucket.
      const cache = yield* CacheStore
      yield* cache.takeTokens("ratelimit:k", small, 1_000)
      // The lease still serves what it holds, then the key is `take`'s, which refuses.
      for (let i = 0; i < size - 1; i++) {
        expect(limits.takeLeasedUnsafe("k", small)?.allowed).toBe(true)
        yield* settle
      }
      expect(limits.takeLeasedUnsafe("k", small)).toBeUndefined()
      expect((yield* limits.take("k", small)).allowed).toBe(false)
    }).pipe(Effect.provide(limiter)))
})
