/**
 * Cache-aside for `GET /data/{id}` (SPEC §3). Keys are per tenant and id; hits
 * live CACHE_TTL (with up to 10 % jitter, so entries written together do not
 * expire together), a 404 lives CACHE_NEGATIVE_TTL and is replaced when the id
 * is stored. Concurrent misses for one id make one database read. The cache is
 * never required: each call gives up after CACHE_TIMEOUT, after 5 failures in a
 * row a circuit breaker skips it for a while, and reads go to the database.
 */
import type { StoredRecord } from "@strata/domain"
import { Context, Deferred, Duration, Effect, Layer, Metric, Option, Schedule } from "effect"
import { CircuitBreaker } from "effect/persistence"
import { AppConfig } from "../config/AppConfig.ts"
import { Db } from "../db/Db.ts"
import type { DbError } from "../db/DbError.ts"
import { trackBreaker } from "../observability/BreakerMetrics.ts"
import { labelled } from "../observability/Labels.ts"
import { Cache } from "./Cache.ts"

/** What answered a read, for the `Cache-Status` header (RFC 9211). */
export type CacheOutcome = "hit" | "miss" | "unavailable"

const NOT_FOUND = "" // a stored 404: no record serialises to the empty string

export const cacheRequests = Metric.counter("strata_cache_requests_total", {
  description: "Record cache lookups by outcome (hit, miss, error)"
})
const lookups = labelled(cacheRequests)

export class RecordCache extends Context.Service<RecordCache, {
  readonly findById: (
    tenant: string,
    id: string
  ) => Effect.Effect<{ readonly record: Option.Option<StoredRecord>; readonly cache: CacheOutcome }, DbError>
  /** Writes newly stored records to the cache (and so drops cached 404s for their ids). */
  readonly remember: (tenant: string, records: ReadonlyArray<StoredRecord>) => Effect.Effect<void>
  /** `up`, or `degraded` when the cache does not answer (reads still work). */
  readonly health: Effect.Effect<"up" | "degraded">
}>()("strata/RecordCache") {
  static readonly layer: Layer.Layer<RecordCache, never, Cache | Db | AppConfig> = Layer.effect(
    RecordCache,
    Effect.gen(function*() {
      const cache = yield* Cache
      const db = yield* Db
      const config = yield* AppConfig
      const breaker = yield* CircuitBreaker.make({
        tripPolicy: CircuitBreaker.consecutive(5),
        openDuration: Schedule.min([Schedule.exponential("1 second"), Schedule.spaced("30 seconds")])
      }).pipe(Effect.provide(CircuitBreaker.layerStoreMemory()))
      yield* trackBreaker("cache", breaker)

      const keyOf = (tenant: string, id: string) => `r:${encodeURIComponent(tenant)}:${id}`
      const jittered = (ttl: Duration.Duration) => Duration.millis(Duration.toMillis(ttl) * (1 + Math.random() * 0.1))
      /** Every cache call: bounded in time, behind the breaker, never failing the caller. */
      const guarded = <A>(effect: Effect.Effect<A, unknown>) =>
        effect.pipe(
          Effect.timeout(config.cacheTimeout),
          breaker.execute({ key: "cache" }),
          Effect.map(Option.some),
          Effect.catchCause(() => Effect.as(Metric.update(lookups({ outcome: "error" }), 1), Option.none<A>()))
        )

      // One database read per (tenant, id) at a time; later misses wait for it.
      const inFlight = new Map<string, Deferred.Deferred<Option.Option<StoredRecord>, DbError>>()
      const readThrough = (tenant: string, id: string) =>
        Effect.suspend(() => {
          const key = keyOf(tenant, id)
          const pending = inFlight.get(key)
          if (pending !== undefined) return Deferred.await(pending)
          const deferred = Deferred.makeUnsafe<Option.Option<StoredRecord>, DbError>()
          inFlight.set(key, deferred)
          return db.findById(tenant, id).pipe(
            Effect.tap((found) =>
              guarded(cache.setMany([{
                key,
                value: Option.match(found, { onNone: () => NOT_FOUND, onSome: (r) => JSON.stringify(r) }),
                ttl: Option.isSome(found) ? jittered(config.cacheTtl) : config.cacheNegativeTtl
              }]))
            ),
            Effect.onExit((exit) =>
              Effect.sync(() => {
                inFlight.delete(key)
                Deferred.doneUnsafe(deferred, exit)
              })
            ),
            // The read finishes for the waiters even if its first caller goes away.
            Effect.forkDetach,
            Effect.flatMap(() => Deferred.await(deferred))
          )
        })

      const findById = (tenant: string, id: string) =>
        Effect.gen(function*() {
          const cached = yield* guarded(cache.get(keyOf(tenant, id)))
          if (Option.isSome(cached) && Option.isSome(cached.value)) {
            yield* Metric.update(lookups({ outcome: "hit" }), 1)
            const text = cached.value.value
            return {
              record: text === NOT_FOUND ? Option.none() : Option.some(JSON.parse(text) as StoredRecord),
              cache: "hit" as const
            }
          }
          if (Option.isSome(cached)) yield* Metric.update(lookups({ outcome: "miss" }), 1)
          const record = yield* readThrough(tenant, id)
          return { record, cache: Option.isSome(cached) ? "miss" as const : "unavailable" as const }
        })

      return RecordCache.of({
        findById,
        remember: (tenant, records) =>
          Effect.asVoid(guarded(cache.setMany(records.map((r) => ({
            key: keyOf(tenant, r.id),
            value: JSON.stringify(r),
            ttl: jittered(config.cacheTtl)
          }))))),
        health: Effect.map(guarded(cache.ping), (ok) => Option.isSome(ok) ? "up" as const : "degraded" as const)
      })
    })
  )
}
