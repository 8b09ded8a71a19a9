/**
 * Cache-aside for `GET /data/{id}` (README: Cache), in two levels, both holding the
 * serialised answer: `LocalAnswers` in process (RECORD_CACHE_BYTES) in front
 * of the shared cache (Redis). Keys are per tenant and id; Redis entries live
 * CACHE_TTL (with up to 10 % jitter, so entries written together do not expire
 * together), a 404 lives CACHE_NEGATIVE_TTL there and is replaced when the id
 * is stored. Reads that miss this process's level go out together, once per
 * turn of the event loop: one Redis call, then one database statement for the
 * rest; concurrent misses for one id make one database read. The cache is
 * never required: each call gives up after CACHE_TIMEOUT, after 5 failures in a
 * row a circuit breaker skips it for a while, and reads go to the database.
 * Writes to Redis never hold up the request that causes them.
 */
import {
  type Cause,
  Clock,
  Context,
  Duration,
  Effect,
  Exit,
  FiberSet,
  Layer,
  Metric,
  Option,
  Schedule,
  Tracer
} from "effect"
import { CircuitBreaker } from "effect/persistence"
import { type CacheEntry, CacheStore } from "../platform/cache/CacheStore.ts"
import { CacheConfig } from "../platform/config/CacheConfig.ts"
import { trackBreaker } from "../platform/observability/BreakerMetrics.ts"
import { labelled } from "../platform/observability/Labels.ts"
import { linksTo } from "../platform/observability/Tracing.ts"
import { withDeadline } from "../platform/runtime/Deadline.ts"
import { perTurn } from "../platform/runtime/PerTurn.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import { ReadReplicas } from "../platform/sql/ReadReplicas.ts"
import { onReplica } from "../platform/sql/ReadTarget.ts"
import { LocalAnswers } from "./LocalAnswers.ts"
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

/** What a read finds: the record's answer (none: no such record) and where it came from. */
interface Found {
  readonly answer: Option.Option<string>
  readonly cache: CacheOutcome
}

/** A read waiting for its batch, with the request span it serves (for links). */
interface Lookup {
  readonly tenant: string
  readonly id: string
  readonly key: string
  readonly span: Tracer.AnySpan | undefined
  readonly resume: (exit: Exit.Exit<Found, DbError>) => void
}

/** At most this many keys in one MGET and one database statement. */
const READ_BATCH_MAX = 500

/** A record's answer to remember: its id and `recordText`. */
export interface Answer {
  readonly id: string
  readonly text: string
}

export class RecordCache extends Context.Service<RecordCache, {
  /** The record's answer (JSON text) from the in-process level only, synchronously. */
  readonly peekUnsafe: (tenant: string, id: string) => string | undefined
  /** Counts a hit that `peekUnsafe` gave and that was served. */
  readonly countHitUnsafe: () => void
  /** The record's answer (JSON text) from either level or the database. */
  readonly findById: (
    tenant: string,
    id: string
  ) => Effect.Effect<{ readonly answer: Option.Option<string>; readonly cache: CacheOutcome }, DbError>
  /**
   * Writes newly stored records to both levels (and so drops cached 404s for
   * their ids); returns at once, the Redis write goes on in the background.
   */
  readonly rememberUnsafe: (tenant: string, answers: ReadonlyArray<Answer>) => void
  /** `up`, or `degraded` when the cache does not answer (reads still work). */
  readonly health: Effect.Effect<"up" | "degraded">
}>()("strata/records/RecordCache") {
  static readonly layer: Layer.Layer<RecordCache, never, CacheStore | RecordStore | CacheConfig | ReadReplicas> = Layer
    .effect(
      RecordCache,
      Effect.gen(function*() {
        const cache = yield* CacheStore
        const db = yield* RecordStore
        const replicas = yield* ReadReplicas
        const config = yield* CacheConfig
        const context = yield* Effect.context<never>()
        // Write-throughs and read batches run in fibers owned by the layer's scope.
        const runInBackground = yield* FiberSet.makeRuntime<never>()
        // Captured here: peek runs outside fibers, on the hot routes.
        const clock = yield* Clock.clockWith(Effect.succeed)
        const local = new LocalAnswers(
          config.recordCacheBytes,
          Duration.toMillis(config.cacheTtl),
          () => clock.currentTimeMillisUnsafe()
        )
        const hit = lookups({ outcome: "hit" })
        const misses = lookups({ outcome: "miss" })
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
        // each was a noticeable part of a POST and of an uncached read, and one per
        // group commit still showed in profiles. No caller waits for it; this process
        // answers from its own level meanwhile, other replicas from the database.
        let pending: Array<CacheEntry> = []
        let timer: ReturnType<typeof setTimeout> | undefined
        const flush = () => {
          clearTimeout(timer)
          timer = undefined
          const entries = pending
          pending = []
          runInBackground(guarded(cache.setMany(entries), writeThroughTimeoutMs))
        }
        const write = (entry: CacheEntry) => {
          pending.push(entry)
          if (pending.length >= WRITE_THROUGH_MAX) flush()
          else if (timer === undefined) timer = setTimeout(flush, WRITE_THROUGH_MS)
        }
        const peek = (tenant: string, id: string) => local.get(recordCacheKey(tenant, id))
        const countHit = () => hit.updateUnsafe(1, context)

        // Reads past this process's level are looked up together, once per turn of the
        // event loop, as writes are committed together: one Redis MGET for the turn's
        // keys, then one database statement for those Redis did not have. One call per
        // read cost each a fiber, a deadline, a breaker, a span, metrics and a round trip
        // (docs/PERFORMANCE.md); a batch now shares them.
        // A key whose database read is under way waits for it rather than reading again.
        const reading = new Map<string, Array<(exit: Exit.Exit<Option.Option<string>, DbError>) => void>>()

        const readThrough = (reads: ReadonlyArray<Lookup & { readonly cache: CacheOutcome }>) =>
          Effect.gen(function*() {
            const fresh: Array<Lookup> = []
            for (const lookup of reads) {
              const answer = (exit: Exit.Exit<Option.Option<string>, DbError>) =>
                lookup.resume(Exit.map(exit, (answer) => ({ answer, cache: lookup.cache })))
              const waiting = reading.get(lookup.key)
              if (waiting !== undefined) waiting.push(answer)
              else {
                reading.set(lookup.key, [answer])
                fresh.push(lookup)
              }
            }
            if (fresh.length === 0) return
            const settle = (exitOf: (i: number) => Exit.Exit<Option.Option<string>, DbError>) =>
              Effect.sync(() =>
                fresh.forEach((lookup, i) => {
                  const waiting = reading.get(lookup.key) ?? []
                  reading.delete(lookup.key)
                  const exit = exitOf(i)
                  for (const answer of waiting) answer(exit)
                })
              )
            // On a replica when one is fresh enough; the records it lacks, and only those,
            // are asked of the primary (ReadReplicas), so a lagging replica never answers 404
            // for what was written.
            const found = Effect.flatMap(
              replicas.read(Effect.all([db.findByIds(fresh), onReplica])),
              ([records, replicated]) => {
                const missing = replicated ? fresh.filter((_, i) => Option.isNone(records[i])) : []
                if (missing.length === 0) return Effect.succeed(records)
                return Effect.map(db.findByIds(missing), (again) => {
                  let at = 0
                  return records.map((record) => Option.isSome(record) ? record : again[at++])
                })
              }
            )
            // Every waiter is answered from the exit (settle), so nothing is left to fail here.
            yield* Effect.exit(
              found.pipe(
                Effect.map((found) => found.map(Option.map((record) => record.text))),
                // A record goes to this process's level at once, so Redis may follow later;
                // a 404 lives in Redis alone, so the next miss must find it there.
                Effect.tap((texts) => {
                  const notFound: Array<CacheEntry> = []
                  fresh.forEach((lookup, i) => {
                    const text = texts[i]
                    if (Option.isSome(text)) {
                      local.set(lookup.key, text.value)
                      write({ key: lookup.key, value: text.value, ttl: jittered(config.cacheTtl) })
                    } else notFound.push({ key: lookup.key, value: NOT_FOUND, ttl: config.cacheNegativeTtl })
                  })
                  return notFound.length === 0 ? Effect.void : guarded(cache.setMany(notFound))
                }),
                Effect.onExit((exit) =>
                  settle((i) => Exit.isSuccess(exit) ? Exit.succeed(exit.value[i]) : exit as Exit.Exit<never, DbError>)
                )
              )
            )
          })

        const lookUp = (reads: ReadonlyArray<Lookup>) =>
          Effect.gen(function*() {
            const cached = yield* guarded(cache.getMany(reads.map((l) => l.key)))
            const toRead: Array<Lookup & { readonly cache: CacheOutcome }> = []
            let hits = 0
            for (let i = 0; i < reads.length; i++) {
              const lookup = reads[i]
              if (Option.isNone(cached)) {
                toRead.push({ ...lookup, cache: "unavailable" })
                continue
              }
              const value = cached.value[i]
              if (Option.isNone(value)) {
                toRead.push({ ...lookup, cache: "miss" })
                continue
              }
              hits++
              if (value.value === NOT_FOUND) lookup.resume(Exit.succeed({ answer: Option.none(), cache: "hit" }))
              else {
                local.set(lookup.key, value.value)
                lookup.resume(Exit.succeed({ answer: Option.some(value.value), cache: "hit" }))
              }
            }
            if (hits > 0) yield* Metric.update(hit, hits)
            if (Option.isSome(cached) && toRead.length > 0) yield* Metric.update(misses, toRead.length)
            if (toRead.length > 0) yield* readThrough(toRead)
          }).pipe(
            // A defect (a bug) must still answer every waiting read.
            Effect.catchCause((cause) =>
              Effect.sync(() => reads.forEach((lookup) => lookup.resume(Exit.failCause(cause as Cause.Cause<never>))))
            ),
            // A batch serves many requests: a trace of its own, linked to theirs (as a group commit).
            Effect.withSpan("RecordCache.readBatch", { root: true, links: linksTo(reads) }, {
              captureStackTrace: false
            })
          )

        const lookUpThisTurn = perTurn<Lookup>((reads) => {
          for (let i = 0; i < reads.length; i += READ_BATCH_MAX) {
            runInBackground(lookUp(reads.slice(i, i + READ_BATCH_MAX)))
          }
        })

        const findById = (tenant: string, id: string) =>
          Effect.withFiber((fiber) => {
            const near = peek(tenant, id)
            if (near !== undefined) {
              countHit()
              return Effect.succeed<Found>({ answer: Option.some(near), cache: "hit" })
            }
            const span = Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
            return Effect.callback<Found, DbError>((resume) => {
              lookUpThisTurn({ tenant, id, key: recordCacheKey(tenant, id), span, resume })
            })
          })

        const remember = (tenant: string, answers: ReadonlyArray<Answer>) => {
          for (const a of answers) {
            const key = recordCacheKey(tenant, a.id)
            local.set(key, a.text)
            write({ key, value: a.text, ttl: jittered(config.cacheTtl) })
          }
        }

        return RecordCache.of({
          peekUnsafe: peek,
          countHitUnsafe: countHit,
          findById,
          rememberUnsafe: remember,
          health: Effect.map(guarded(cache.ping), (ok) => Option.isSome(ok) ? "up" as const : "degraded" as const)
        })
      })
    )
}
