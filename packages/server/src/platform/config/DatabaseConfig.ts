/**
 * The database: which one (PostgreSQL or the embedded PGlite), its pool and
 * migrations, how records are partitioned, kept and written, and the resilience
 * policy of every query (timeout, retries, circuit breaker).
 */
import { Config, Context, Duration, Layer, Option, Redacted, Schema } from "effect"
import { type InvalidConfig, readAll, type Values } from "./Read.ts"
import { duration, flag, intBetween, oneOf, parseDuration } from "./Units.ts"

export const PartitionInterval = ["day", "week", "month"] as const
export type PartitionInterval = (typeof PartitionInterval)[number]

/** PostgreSQL's `plan_cache_mode` for this process's connections, or `server`: send none. */
export const PlanCacheMode = ["force_generic_plan", "auto", "force_custom_plan", "server"] as const
export type PlanCacheMode = (typeof PlanCacheMode)[number]

export const databaseFields = {
  databaseUrl: Config.option(Config.Redacted("DATABASE_URL")),
  // Streaming replicas for reads (README: Read replicas): comma-separated URLs.
  databaseReadUrl: Config.Redacted("DATABASE_READ_URL").pipe(
    Config.withDefault(Redacted.make("")),
    Config.map((urls) =>
      Redacted.value(urls).split(",").map((s) => s.trim()).filter((s) => s.length > 0).map((s) => Redacted.make(s))
    )
  ),
  replicaMaxLag: duration("REPLICA_MAX_LAG").pipe(Config.withDefault(Duration.seconds(5))),
  replicaWait: duration("REPLICA_WAIT").pipe(Config.withDefault(Duration.millis(50))),
  replicaTimeout: duration("REPLICA_TIMEOUT").pipe(Config.withDefault(Duration.seconds(1))),
  dataDir: Config.String("DATA_DIR").pipe(Config.withDefault("./.strata")),
  databasePoolMax: intBetween("DATABASE_POOL_MAX", 1, 1000).pipe(Config.withDefault(10)),
  databasePlanCacheMode: oneOf(PlanCacheMode, "DATABASE_PLAN_CACHE_MODE").pipe(
    Config.withDefault("force_generic_plan")
  ),
  migrateOnStart: flag("MIGRATE_ON_START").pipe(Config.withDefault(true)),
  writeBatchWindow: duration("WRITE_BATCH_WINDOW").pipe(Config.withDefault(Duration.zero)),
  writeBatchMax: intBetween("WRITE_BATCH_MAX", 1, 10_000).pipe(Config.withDefault(500)),
  writeBatchConcurrency: intBetween("WRITE_BATCH_CONCURRENCY", 1, 100).pipe(Config.withDefault(1)),
  partitionInterval: oneOf(PartitionInterval, "PARTITION_INTERVAL").pipe(Config.withDefault("month")),
  // "off" in any case, as for the enumerations; the duration units stay lower case.
  retention: Config.schema(
    Schema.String.check(Schema.isPattern(/^(?:[oO][fF][fF]|\d+(?:\.\d+)?\s*(?:ms|s|m|h|d))$/, {
      message: "expected off or a duration such as 400d"
    })),
    "RETENTION"
  ).pipe(
    Config.withDefault("off"),
    Config.map((text) =>
      text.toLowerCase() === "off" ? Option.none<Duration.Duration>() : Option.some(parseDuration(text))
    )
  ),
  maintenanceEvery: duration("MAINTENANCE_EVERY").pipe(Config.withDefault(Duration.hours(1))),
  dbTimeout: duration("DB_TIMEOUT").pipe(Config.withDefault(Duration.seconds(5))),
  dbRetries: intBetween("DB_RETRIES", 0, 10).pipe(Config.withDefault(3)),
  dbRetryBase: duration("DB_RETRY_BASE").pipe(Config.withDefault(Duration.millis(50))),
  dbBreakerFailures: intBetween("DB_BREAKER_FAILURES", 1, 1000).pipe(Config.withDefault(5))
}

export type DatabaseSettings = Values<typeof databaseFields>

export class DatabaseConfig
  extends Context.Service<DatabaseConfig, DatabaseSettings>()("strata/config/DatabaseConfig")
{
  static readonly layer: Layer.Layer<DatabaseConfig, InvalidConfig> = Layer.effect(
    DatabaseConfig,
    readAll(databaseFields)
  )
}

/** The database URL with its password hidden, for logs. */
export const describeDatabase = (url: Option.Option<Redacted.Redacted>): string =>
  Option.match(url, {
    onNone: () => "embedded PGlite",
    onSome: (u) => {
      const parsed = URL.parse(Redacted.value(u))
      if (parsed === null) return "(unparseable DATABASE_URL)"
      if (parsed.password !== "") parsed.password = "***"
      return parsed.toString()
    }
  })
