/**
 * Background upkeep of the database (README: Storage), at startup and then every
 * MAINTENANCE_EVERY: creates `records` partitions ahead of need (about two
 * months), drops whole partitions older than RETENTION, deletes expired
 * idempotency keys and the change feed's changes older than FEED_RETENTION. Running it on several replicas at once is harmless.
 */
import { Duration, Effect, Layer, Option, Schedule } from "effect"
import { IdempotencyStore } from "../idempotency/IdempotencyStore.ts"
import { DatabaseConfig } from "../platform/config/DatabaseConfig.ts"
import { FeedConfig } from "../platform/config/FeedConfig.ts"
import { ChangeLog } from "../records/ChangeLog.ts"
import { RecordStore } from "../records/RecordStore.ts"

const AHEAD = Duration.days(62) // two months, or many days / weeks

export const maintainOnce = Effect.gen(function*() {
  const db = yield* RecordStore
  const config = yield* DatabaseConfig
  const now = new Date()
  const result = yield* db.maintainPartitions({
    now,
    aheadUntil: new Date(now.getTime() + Duration.toMillis(AHEAD)),
    dropBefore: Option.match(config.retention, {
      onNone: () => undefined,
      onSome: (retention) => new Date(now.getTime() - Duration.toMillis(retention))
    })
  })
  const expiredKeys = yield* Effect.flatMap(IdempotencyStore, (store) => store.purgeExpired)
  const { feedRetention } = yield* FeedConfig
  const expiredChanges = yield* Effect.flatMap(
    ChangeLog,
    (log) => log.expire(new Date(now.getTime() - Duration.toMillis(feedRetention)))
  )
  if (result.created.length > 0 || result.dropped.length > 0 || expiredKeys > 0 || expiredChanges > 0) {
    yield* Effect.logInfo("Maintenance", { ...result, expiredKeys, expiredChanges })
  }
  return result
})

export const layerMaintenance: Layer.Layer<
  never,
  never,
  RecordStore | IdempotencyStore | ChangeLog | DatabaseConfig | FeedConfig
> = Layer
  .effectDiscard(
    Effect.gen(function*() {
      const config = yield* DatabaseConfig
      yield* maintainOnce.pipe(
        Effect.catch((error) => Effect.logWarning("Maintenance failed; will retry", error.message)),
        Effect.repeat(Schedule.spaced(config.maintenanceEvery)),
        Effect.forkScoped
      )
    })
  )
