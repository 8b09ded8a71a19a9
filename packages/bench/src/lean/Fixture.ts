/**
 * What both stand-ins serve (LeanRoute.ts, CallbackRoute.ts): one bearer key, 1,000
 * cached ~300-byte record bodies under UUIDv7-shaped ids, a token bucket per key, and
 * the header values of Strata's hot `GET /data/{id}` (records/HotRoutes.ts). Plain
 * functions, so the two servers differ only in how a request reaches them and how
 * the answer is written.
 */
import { randomUUID } from "node:crypto"

/** The key wrk sends (`Authorization: Bearer …`, reads.lua). */
export const BENCH_TOKEN = "strata_bench_lean_0000000000000000"
export const TENANT = "bench"
export const RECORDS = 1000

/**
 * The id of record `i`: a UUIDv7 shape (version 7, variant 8) made of decimal digits,
 * so reads.lua can make the same ids without 64-bit hex formatting.
 */
export const idOf = (i: number): string =>
  `0193a1b2-c3d4-7${pad(i % 1000, 3)}-8${pad((i * 7) % 1000, 3)}-${pad(i * 7919, 12)}`

const pad = (n: number, width: number) => String(n).padStart(width, "0")

export interface Key {
  readonly id: string
  readonly tenant: string
  readonly scopes: ReadonlyArray<string>
  readonly expiresAt: number | null
  readonly rateLimit: Limit
}

export interface Limit {
  readonly rps: number
  readonly burst: number
}

export interface Decision {
  readonly remaining: number
  readonly resetSeconds: number
}

/** Far above what one process serves, so no request is refused and every one pays for the take. */
const LIMIT: Limit = { rps: 1_000_000, burst: 1_000_000 }

/** The verified keys, by token, as `VerifiedKeys.peek` finds them. */
export const keys = new Map<string, Key>([
  [BENCH_TOKEN, { id: "key_bench", tenant: TENANT, scopes: ["records:read"], expiresAt: null, rateLimit: LIMIT }]
])

/** The in-process answers, by tenant then id, as `RecordCache.peek` finds them. */
export const cache = new Map<string, Map<string, string>>([[TENANT, new Map()]])
for (let i = 0; i < RECORDS; i++) {
  const id = idOf(i)
  const body = JSON.stringify({
    id,
    stream: "bench.readings",
    createdAt: new Date(1_733_000_000_000 + i * 1000).toISOString(),
    data: { sensor: `sensor-${i % 50}`, value: (i * 37) % 1000 / 10, unit: "celsius", tags: ["bench", "lean"] },
    traceparent: null,
    schemaVersion: 1,
    meta: { source: "packages/bench/src/lean", note: "a cached record body of about three hundred bytes" }
  })
  cache.get(TENANT)!.set(id, body)
}

/** A token bucket per key: refilled from the time since its last take, one token taken per read. */
interface Bucket {
  tokens: number
  at: number
}
const buckets = new Map<string, Bucket>()

/** One token of `key`'s bucket, or undefined when it is empty. */
export const take = (key: Key, now: number): Decision | undefined => {
  const limit = key.rateLimit
  let bucket = buckets.get(key.id)
  if (bucket === undefined) {
    bucket = { tokens: limit.burst, at: now }
    buckets.set(key.id, bucket)
  }
  bucket.tokens = Math.min(limit.burst, bucket.tokens + (now - bucket.at) * limit.rps / 1000)
  bucket.at = now
  if (bucket.tokens < 1) return undefined
  bucket.tokens -= 1
  return {
    remaining: Math.floor(bucket.tokens),
    resetSeconds: Math.max(0, Math.ceil((limit.burst - bucket.tokens) / limit.rps))
  }
}

const BEARER = /^Bearer +(\S+) *$/i

/** The key of an `Authorization` header when it is known, unexpired and may read records. */
export const keyFor = (authorization: string | undefined, now: number): Key | undefined => {
  const match = BEARER.exec(authorization ?? "")
  if (match === null) return undefined
  const key = keys.get(match[1])
  if (key === undefined || (key.expiresAt !== null && key.expiresAt <= now)) return undefined
  return key.scopes.includes("records:read") ? key : undefined
}

export const RECORD_CACHE_CONTROL = "private, max-age=31536000, immutable"
export const CACHE_HIT = "strata; hit"

const policies = new WeakMap<Limit, string>()
export const rateLimitPolicy = (limit: Limit): string => {
  let policy = policies.get(limit)
  if (policy === undefined) {
    policy = `"per-key";q=${limit.burst};w=${Math.max(1, Math.ceil(limit.burst / limit.rps))}`
    policies.set(limit, policy)
  }
  return policy
}
export const rateLimitState = (decision: Decision): string =>
  `"per-key";r=${decision.remaining};t=${decision.resetSeconds}`

/** RFC 9110 If-None-Match: `*` or a list of entity tags (weak comparison). */
export const matchesEtag = (header: string, etag: string): boolean =>
  header.trim() === "*" || header.split(",").some((tag) => tag.trim().replace(/^W\//, "") === etag)

const SANE_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/
export const requestIdOf = (given: string | undefined): string =>
  given !== undefined && SANE_REQUEST_ID.test(given) ? given : randomUUID()

/** The port from PORT (default 3210). */
export const portOf = (): number => Number(process.env.PORT ?? 3210)
