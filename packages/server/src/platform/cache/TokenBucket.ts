/**
 * Token buckets for rate limits: `rps` tokens a second flow into a bucket that
 * holds at most `burst`; a request takes one. The same arithmetic runs in Redis
 * (a Lua script, so replicas share one bucket per key) and in process. A take
 * may ask for several tokens at once (a replica leasing a few, see
 * RateLimiter.ts): it gets as many whole tokens as the bucket holds, up to that.
 */

export interface BucketLimit {
  readonly rps: number
  readonly burst: number
}

/** What a take got, and the bucket after it. */
export interface BucketTake {
  /** Whole tokens handed out: 0 when refused. */
  readonly granted: number
  /** Tokens left in the bucket (fractional while it refills). */
  readonly tokens: number
}

export interface BucketDecision {
  readonly allowed: boolean
  /** Whole tokens left after this request. */
  readonly remaining: number
  /** Seconds until the next token when refused, else 0. */
  readonly retryAfterSeconds: number
  /** Seconds until the bucket is full again. */
  readonly resetSeconds: number
}

/** The decision for a request, given the tokens the bucket holds after it. */
export const decide = (allowed: boolean, tokens: number, limit: BucketLimit): BucketDecision => ({
  allowed,
  remaining: Math.max(0, Math.floor(tokens)),
  retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil((1 - tokens) / limit.rps)),
  resetSeconds: Math.max(0, Math.ceil((limit.burst - tokens) / limit.rps))
})

/**
 * KEYS[1]: the bucket; ARGV: rps, burst, tokens wanted. Redis's own clock, so
 * replicas agree. Answers {granted, tokens left}.
 */
export const TAKE_TOKENS_LUA = `
local rps = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rps / 1000)
local granted = math.min(wanted, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rps * 1000) + 1000)
return {granted, tostring(tokens)}
`

/** Buckets in process, at most `maxBuckets` (the least recently used go first). */
export class LocalBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>()
  private readonly maxBuckets: number
  constructor(maxBuckets = 100_000) {
    this.maxBuckets = maxBuckets
  }

  /** Takes up to `wanted` tokens at `now` (milliseconds, from the caller's Clock). */
  take(key: string, limit: BucketLimit, wanted: number, now: number): BucketTake {
    const state = this.buckets.get(key) ?? { tokens: limit.burst, at: now }
    this.buckets.delete(key) // re-insert at the end: Map keeps insertion order
    const tokens = Math.min(limit.burst, state.tokens + Math.max(0, now - state.at) * limit.rps / 1000)
    const granted = Math.min(wanted, Math.floor(tokens))
    this.buckets.set(key, { tokens: tokens - granted, at: now })
    if (this.buckets.size > this.maxBuckets) this.buckets.delete(this.buckets.keys().next().value!)
    return { granted, tokens: tokens - granted }
  }
}
