/**
 * Cache-aside for `GET /data/{id}` (README: Cache), in two levels, both holding the
 * serialised answer: `LocalAnswers` in process (RECORD_CACHE_BYTES) in front
 * of the shared cache (Redis). Keys are per tenant and id; Redis entries live
 * CACHE_TTL (with up to 10 % jitter, so entries written together do not expire
 * together), a 404 lives CACHE_NEGATIVE_TTL there and is replaced when the id
 * is stored. Concurrent misses for one id make one database read. The cache is
 * never required: each call gives up after CACHE_TIMEOUT, after 5 failures in a
 * row a circuit breaker skips it for a while, and reads go to the database.
 * Writes to Redis never hold up the request that causes them.
 */
import { Clock, Context, Duration, Effect, Layer, Metric, Option, Schedule } from "effect"
import { CircuitBreaker } from "effect/persistence"
import { type CacheEntry, CacheStore } from "../platform/cache/CacheStore.ts"
import { makeSingleFlight } from "../platform/cache/SingleFlight.ts"
import { CacheConfig } from "../platform/config/CacheConfig.ts"
import { trackBreaker } from "../platform/observability/BreakerMetrics.ts"
import { labelled } from "../platform/observability/Labels.ts"
import { withDeadline } from "../platform/runtime/Deadline.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import { LocalAnswers } from "./LocalAnswers.ts"
import { recordText } from "./RecordJson.ts"
import { RecordStore } from "./RecordStore.ts"

/** What answered a read, for the `Cache-Status` header (RFC 9211). */
export type CacheOutcome = "hit" | "miss" | "unavailable"

const NOT_FOUND = "" // a stored 404: no record serialises to the empty string

/** How long an entry waits for others to go to Redis with it, and how many go at most in one call. */
const WRITE_THROUGH_MS = 10
const WRITE_THROUGH_MAX = 500
/**
 * A write-through's deadline. No request waits for it, so it is cut short when
 * Redis does not answer, not when this process is busy: at CACHE_TIMEOUT (a
 * read's budget) 50 concurrent batches of 100 records made five in a row time
 * out and opened the breaker for every read (`pnpm bench`).
 */
const WRITE_THROUGH_TIMEOUT_MS = 1000

// Tenants are few and every cached read names one: each one's prefix is encoded once.
const prefixes = new Map<string, string>()

/**
 * A record's key in the shared cache, which Redis holds under REDIS_KEY_PREFIX
 * (the store's key prefix). Exported so the bench names the keys it inspects as this does.
 */
export const recordCacheKey = (tenant: string, id: string): string => {
  let prefix = prefixes.get(tenant)
  if (prefix === undefined) {
    prefix = `r:${encodeURIComponent(tenant)}:`
    if (prefixes.size >= 10_000) prefixes.clear()
    prefixes.set(tenant, prefix)
  }
  return prefix + id
}

const lookups = labelled((attributes) =>
  Metric.counter("strata_cache_requests_total", {
    description: "Record cache lookups by outcome (hit, miss, error)",
    attributes
  })
)

/** A record's answer to remember: its id and `recordText`. */
export interface Answer {
  readonly id: string
  readonly text: string
}

export class RecordCache extends Context.Service<RecordCache, {
  /** The record's answer (JSON text) from the in-process level only, synchronously. */
  readonly peek: (tenant: string, id: string) => string | undefined
  /** Counts a hit that `peek` gave and that was served. */
  readonly countHit: () => void
  /** The record's answer (JSON text) from either level or the database. */
  readonly findById: (
    tenant: string,
    id: string
  ) => Effect.Effect<{ readonly answer: Option.Option<string>; readonly cache: CacheOutcome }, DbError>
  /**
   * Writes newly stored records to both levels (and so drops cached 404s for
   * their ids); returns at once, the Redis write goes on in the background.
   */
  readonly remember: (tenant: string, answers: ReadonlyArray<Answer>) => void
  /** `up`, or `degraded` when the cache does not answer (reads still work). */
  readonly health: Effect.Effect<"up" | "degraded">
}>()("strata/records/RecordCache") {
  static readonly layer: Layer.Layer<RecordCache, never, CacheStore | RecordStore | CacheConfig> = Layer.effect(
    RecordCache,
    Effect.gen(function*() {
      const cache = yield* CacheStore
      const db = yield* RecordStore
      const config = yield* CacheConfig
      const context = yield* Effect.context<never>()
      // Captured here: peek runs outside fibers, on the hot routes.
      const clock = yield* Clock.clockWith(Effect.succeed)
      const local = new LocalAnswers(
        config.recordCacheBytes,
        Duration.toMillis(config.cacheTtl),
        () => clock.currentTimeMillisUnsafe()
      )
      const hit = lookups({ outcome: "hit" })
      const breaker = yield* CircuitBreaker.make({
        tripPolicy: CircuitBreaker.consecutive(5),
        openDuration: Schedule.min([Schedule.exponential("1 second"), Schedule.spaced("30 seconds")])
      }).pipe(Effect.provide(CircuitBreaker.layerStoreMemory()))
      yield* trackBreaker("cache", breaker)

      const cacheTimeoutMs = Duration.toMillis(config.cacheTimeout)
      const writeThroughTimeoutMs = Math.max(cacheTimeoutMs, WRITE_THROUGH_TIMEOUT_MS)
      const jittered = (ttl: Duration.Duration) => Duration.millis(Duration.toMillis(ttl) * (1 + Math.random() * 0.1))
      /** Every cache call: bounded in time, behind the breaker, never failing the caller. */
      const guarded = <A>(effect: Effect.Effect<A, unknown>, timeoutMs = cacheTimeoutMs) =>
        withDeadline(effect, timeoutMs, () => Effect.fail("timeout" as const)).pipe(
          breaker.execute({ key: "cache" }),
          Effect.map(Option.some),
          Effect.catchCause(() => Effect.as(Metric.update(lookups({ outcome: "error" }), 1), Option.none<A>()))
        )

      // Written to Redis in one call for everything written within WRITE_THROUGH_MS
      // (or WRITE_THROUGH_MAX entries), by writes and read-throughs alike: a call
      // each cost about a tenth of a POST and of an uncached read (profiled), and
      // one per group commit still showed. No caller waits for it; this process
      // answers from its own level meanwhile, other replicas from the database.
      let pending: Array<CacheEntry> = []
      let timer: ReturnType<typeof setTimeout> | undefined
      const flush = () => {
        clearTimeout(timer)
        timer = undefined
        const entries = pending
        pending = []
        Effect.runForkWith(context)(
          guarded(cache.setMany(entries), writeThroughTimeoutMs)
        )
      }
      const write = (entry: CacheEntry) => {
        pending.push(entry)
        if (pending.length >= WRITE_THROUGH_MAX) flush()
        else if (timer === undefined) timer = setTimeout(flush, WRITE_THROUGH_MS)
      }
      // One database read per (tenant, id) at a time; later misses wait for it.
      const singleFlight = makeSingleFlight<Option.Option<string>, DbError>()
      const readThrough = (tenant: string, id: string) => {
        const key = recordCacheKey(tenant, id)
        return singleFlight(
          key,
          db.findById(tenant, id).pipe(
            Effect.map(Option.map(recordText)),
            // A record goes to this process's level at once, so Redis may follow later;
            // a 404 lives in Redis alone, so the next miss must find it there.
            Effect.tap((text) =>
              Option.isSome(text)
                ? Effect.sync(() => {
                  local.set(key, text.value)
                  write({ key, value: text.value, ttl: jittered(config.cacheTtl) })
                })
                : guarded(cache.setMany([{ key, value: NOT_FOUND, ttl: config.cacheNegativeTtl }]))
            )
          )
        )
      }

      const peek = (tenant: string, id: string) => local.get(recordCacheKey(tenant, id))
      const countHit = () => hit.updateUnsafe(1, context)

      const findById = (tenant: string, id: string) =>
        Effect.gen(function*() {
          const key = recordCacheKey(tenant, id)
          const near = peek(tenant, id)
          if (near !== undefined) {
            countHit()
            return { answer: Option.some(near), cache: "hit" as const }
          }
          const cached = yield* guarded(cache.get(key))
          if (Option.isSome(cached) && Option.isSome(cached.value)) {
            yield* Metric.update(hit, 1)
            const text = cached.value.value
            if (text === NOT_FOUND) return { answer: Option.none(), cache: "hit" as const }
            local.set(key, text)
            return { answer: Option.some(text), cache: "hit" as const }
          }
          if (Option.isSome(cached)) yield* Metric.update(lookups({ outcome: "miss" }), 1)
          const answer = yield* readThrough(tenant, id)
          return { answer, cache: Option.isSome(cached) ? "miss" as const : "unavailable" as const }
        })

      const remember = (tenant: string, answers: ReadonlyArray<Answer>) => {
        for (const a of answers) {
          const key = recordCacheKey(tenant, a.id)
          local.set(key, a.text)
          write({ key, value: a.text, ttl: jittered(config.cacheTtl) })
        }
      }

      return RecordCache.of({
        peek,
        countHit,
        findById,
        remember,
        health: Effect.map(guarded(cache.ping), (ok) => Option.isSome(ok) ? "up" as const : "degraded" as const)
      })
    })
  )
}
