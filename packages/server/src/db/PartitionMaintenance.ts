/**
 * Keeps `records` partitions ahead of need and applies RETENTION (SPEC §5):
 * at startup and then every PARTITION_MAINTENANCE_EVERY, it creates the
 * partitions for the next two intervals and drops whole partitions older than
 * RETENTION. Running it on several replicas at once is harmless.
 */
import { Duration, Effect, Layer, Option, Schedule } from "effect"
import { AppConfig } from "../config/AppConfig.ts"
import { Db } from "./Db.ts"

const AHEAD = Duration.days(62) // two months, or many days / weeks

export const maintainOnce = Effect.gen(function*() {
  const db = yield* Db
  const config = yield* AppConfig
  const now = new Date()
  const result = yield* db.maintainPartitions({
    now,
    aheadUntil: new Date(now.getTime() + Duration.toMillis(AHEAD)),
    dropBefore: Option.match(config.retention, {
      onNone: () => undefined,
      onSome: (retention) => new Date(now.getTime() - Duration.toMillis(retention))
    })
  })
  if (result.created.length > 0 || result.dropped.length > 0) {
    yield* Effect.logInfo("Partition maintenance", result)
  }
  return result
})

export const PartitionMaintenanceLive: Layer.Layer<never, never, Db | AppConfig> = Layer.effectDiscard(
  Effect.gen(function*() {
    const config = yield* AppConfig
    yield* maintainOnce.pipe(
      Effect.catch((error) => Effect.logWarning("Partition maintenance failed; will retry", error.message)),
      Effect.repeat(Schedule.spaced(config.partitionMaintenanceEvery)),
      Effect.forkScoped
    )
  })
)
