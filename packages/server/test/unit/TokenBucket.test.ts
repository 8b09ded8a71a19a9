/**
 * The in-process token bucket and the decision made from it (TokenBucket.ts),
 * with time passed in explicitly.
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { decide, LocalBuckets } from "../../src/platform/cache/TokenBucket.ts"

const T0 = 1_700_000_000_000

describe("LocalBuckets.take", () => {
  it("starts full: a new key gets its whole burst, then is refused", () => {
    const buckets = new LocalBuckets()
    const limit = { rps: 2, burst: 3 }
    const granted = [1, 2, 3, 4].map(() => buckets.take("k", limit, 1, T0).granted)
    expect(granted).toEqual([1, 1, 1, 0])
  })

  it("refills at rps tokens a second, and never past the burst", () => {
    const buckets = new LocalBuckets()
    const limit = { rps: 2, burst: 3 }
    expect(buckets.take("k", limit, 3, T0)).toEqual({ granted: 3, tokens: 0 })
    // 400 ms at 2/s: 0.8 of a token, not yet a whole one.
    expect(buckets.take("k", limit, 1, T0 + 400)).toEqual({ granted: 0, tokens: 0.8 })
    expect(buckets.take("k", limit, 1, T0 + 500).granted).toBe(1)
    // An hour idle fills the bucket to the burst and no further.
    expect(buckets.take("k", limit, 10, T0 + 3_600_000)).toEqual({ granted: 3, tokens: 0 })
  })

  it("hands out as many whole tokens as it holds, up to what was asked", () => {
    const buckets = new LocalBuckets()
    const limit = { rps: 1, burst: 5 }
    expect(buckets.take("k", limit, 3, T0)).toEqual({ granted: 3, tokens: 2 })
    expect(buckets.take("k", limit, 3, T0)).toEqual({ granted: 2, tokens: 0 })
    expect(buckets.take("k", limit, 3, T0).granted).toBe(0)
  })

  it("keeps one bucket per key", () => {
    const buckets = new LocalBuckets()
    const limit = { rps: 1, burst: 1 }
    expect(buckets.take("a", limit, 1, T0).granted).toBe(1)
    expect(buckets.take("a", limit, 1, T0).granted).toBe(0)
    expect(buckets.take("b", limit, 1, T0).granted).toBe(1)
  })

  it("does not refill when the clock steps backwards", () => {
    const buckets = new LocalBuckets()
    const limit = { rps: 10, burst: 1 }
    buckets.take("k", limit, 1, T0)
    expect(buckets.take("k", limit, 1, T0 - 60_000).granted).toBe(0)
  })

  it("forgets the least recently used key past maxBuckets (it starts full again)", () => {
    const buckets = new LocalBuckets(2)
    const limit = { rps: 1, burst: 1 }
    buckets.take("a", limit, 1, T0)
    buckets.take("b", limit, 1, T0)
    buckets.take("a", limit, 1, T0) // a is now the most recently used
    buckets.take("c", limit, 1, T0) // evicts b
    expect(buckets.take("a", limit, 1, T0).granted).toBe(0)
    expect(buckets.take("b", limit, 1, T0).granted).toBe(1)
  })

  it("never grants more than the burst plus what flowed in, over any sequence of takes", () => {
    fc.assert(
      fc.property(
        fc.record({ rps: fc.integer({ min: 1, max: 1000 }), burst: fc.integer({ min: 1, max: 1000 }) }),
        fc.array(fc.record({ wait: fc.integer({ min: 0, max: 2000 }), wanted: fc.integer({ min: 1, max: 50 }) }), {
          maxLength: 50
        }),
        (limit, steps) => {
          const buckets = new LocalBuckets()
          let now = T0
          let granted = 0
          for (const step of steps) {
            now += step.wait
            const take = buckets.take("k", limit, step.wanted, now)
            expect(take.granted).toBeGreaterThanOrEqual(0)
            expect(take.granted).toBeLessThanOrEqual(step.wanted)
            expect(take.tokens).toBeGreaterThanOrEqual(0)
            expect(take.tokens).toBeLessThanOrEqual(limit.burst)
            granted += take.granted
          }
          // The time of the first take counts from the start: it finds a full bucket.
          const flowed = (now - T0 - (steps[0]?.wait ?? 0)) * limit.rps / 1000
          expect(granted).toBeLessThanOrEqual(limit.burst + Math.floor(flowed + 1e-9))
        }
      )
    )
  })
})

describe("decide", () => {
  const limit = { rps: 2, burst: 10 }

  it("allowed: whole tokens remaining, no Retry-After, seconds until full", () => {
    expect(decide(true, 3.5, limit)).toEqual({ allowed: true, remaining: 3, retryAfterSeconds: 0, resetSeconds: 4 })
  })

  it("refused: at least one second of Retry-After, rounded up to the next token", () => {
    expect(decide(false, 0.9, limit).retryAfterSeconds).toBe(1)
    expect(decide(false, 0, { rps: 0.5, burst: 2 }).retryAfterSeconds).toBe(2)
    expect(decide(false, 0, { rps: 0.1, burst: 1 }).retryAfterSeconds).toBe(10)
  })

  it("a full bucket resets in 0 seconds; remaining is never negative", () => {
    expect(decide(true, 10, limit).resetSeconds).toBe(0)
    expect(decide(false, -0.5, limit).remaining).toBe(0)
  })
})
