/**
 * Every setting of the server, read from the environment and checked at startup.
 * The README's configuration table lists each variable with its default.
 */
import { Config, Context, Duration, Effect, Layer, Option, Redacted, Schema } from "effect"
import { bytes, duration, intBetween, parseDuration } from "./Units.ts"

export const PartitionInterval = ["day", "week", "month"] as const
export type PartitionInterval = (typeof PartitionInterval)[number]

/** The samplers of the OpenTelemetry spec that Strata supports: the parent-based ones. */
export const TracesSampler = ["parentbased_traceidratio", "parentbased_always_on", "parentbased_always_off"] as const

/** An absolute http(s) URL, such as an OTLP endpoint. */
const httpUrl = (name: string) =>
  Config.schema(
    Schema.String.check(Schema.isPattern(/^https?:\/\/[^\s/]+/, { message: "expected an http(s) URL" })),
    name
  )

const settings = Config.all({
  // Read again before the server starts, to fork (runtime/Workers.ts); here so it is checked and shown.
  workers: intBetween("WORKERS", 1, 64).pipe(Config.withDefault(1)),
  host: Config.String("HOST").pipe(Config.withDefault("0.0.0.0")),
  port: Config.Port("PORT").pipe(Config.withDefault(8080)),
  databaseUrl: Config.option(Config.Redacted("DATABASE_URL")),
  dataDir: Config.String("DATA_DIR").pipe(Config.withDefault("./.strata")),
  databasePoolMax: intBetween("DATABASE_POOL_MAX", 1, 1000).pipe(Config.withDefault(10)),
  migrateOnStart: Config.Boolean("MIGRATE_ON_START").pipe(Config.withDefault(true)),
  maxBodyBytes: bytes("MAX_BODY_BYTES").pipe(Config.withDefault(1024 * 1024)),
  maxRecordBytes: bytes("MAX_RECORD_BYTES").pipe(Config.withDefault(64 * 1024)),
  // Node's own default; the request line (path and query string) counts too.
  maxHeaderBytes: bytes("MAX_HEADER_BYTES").pipe(Config.withDefault(16 * 1024)),
  // PostgreSQL takes at most 65,535 parameters per statement: 6 per record.
  maxBatch: intBetween("MAX_BATCH", 1, 10_000).pipe(Config.withDefault(1000)),
  writeBatchWindow: duration("WRITE_BATCH_WINDOW").pipe(Config.withDefault(Duration.millis(2))),
  writeBatchMax: intBetween("WRITE_BATCH_MAX", 1, 10_000).pipe(Config.withDefault(500)),
  partitionInterval: Config.Literals(PartitionInterval, "PARTITION_INTERVAL").pipe(Config.withDefault("month")),
  retention: Config.schema(
    Schema.String.check(Schema.isPattern(/^(?:off|\d+(?:\.\d+)?\s*(?:ms|s|m|h|d))$/, {
      message: "expected off or a duration such as 400d"
    })),
    "RETENTION"
  ).pipe(
    Config.withDefault("off"),
    Config.map((text) => text === "off" ? Option.none<Duration.Duration>() : Option.some(parseDuration(text)))
  ),
  maintenanceEvery: duration("MAINTENANCE_EVERY").pipe(Config.withDefault(Duration.hours(1))),
  idempotencyTtl: duration("IDEMPOTENCY_TTL").pipe(Config.withDefault(Duration.hours(24))),
  idempotencyLease: duration("IDEMPOTENCY_LEASE").pipe(Config.withDefault(Duration.minutes(1))),
  redisUrl: Config.option(Config.Redacted("REDIS_URL")),
  redisClusterNodes: Config.String("REDIS_CLUSTER_NODES").pipe(
    Config.withDefault(""),
    Config.map((text) => text.split(",").map((s) => s.trim()).filter((s) => s.length > 0))
  ),
  redisKeyPrefix: Config.String("REDIS_KEY_PREFIX").pipe(Config.withDefault("strata:")),
  cacheTtl: duration("CACHE_TTL").pipe(Config.withDefault(Duration.minutes(5))),
  cacheNegativeTtl: duration("CACHE_NEGATIVE_TTL").pipe(Config.withDefault(Duration.seconds(30))),
  cacheTimeout: duration("CACHE_TIMEOUT").pipe(Config.withDefault(Duration.millis(50))),
  // The serialised answers of recent records, in process, in front of Redis (0: off).
  recordCacheBytes: bytes("RECORD_CACHE_BYTES").pipe(Config.withDefault(64 * 1024 * 1024)),
  cacheMaxEntries: intBetween("CACHE_MAX_ENTRIES", 1, 10_000_000).pipe(Config.withDefault(10_000)),
  shutdownDelay: duration("SHUTDOWN_DELAY").pipe(Config.withDefault(Duration.seconds(5))),
  shutdownTimeout: duration("SHUTDOWN_TIMEOUT").pipe(Config.withDefault(Duration.seconds(20))),
  requestTimeout: duration("REQUEST_TIMEOUT").pipe(Config.withDefault(Duration.seconds(10))),
  maxInFlight: intBetween("MAX_IN_FLIGHT", 1, 1_000_000).pipe(Config.withDefault(1000)),
  kafkaBrokers: Config.String("KAFKA_BROKERS").pipe(
    Config.withDefault(""),
    Config.map((text) => text.split(",").map((s) => s.trim()).filter((s) => s.length > 0))
  ),
  kafkaTopic: Config.String("KAFKA_TOPIC").pipe(Config.withDefault("strata.records")),
  // Enough partitions to spread consumers, three replicas to survive a broker's loss.
  kafkaTopicPartitions: intBetween("KAFKA_TOPIC_PARTITIONS", 1, 10_000).pipe(Config.withDefault(12)),
  kafkaTopicReplication: intBetween("KAFKA_TOPIC_REPLICATION", 1, 32).pipe(Config.withDefault(3)),
  kafkaClientId: Config.String("KAFKA_CLIENT_ID").pipe(Config.withDefault("strata")),
  kafkaTls: Config.Boolean("KAFKA_TLS").pipe(Config.withDefault(false)),
  kafkaSaslMechanism: Config.option(
    Config.Literals(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], "KAFKA_SASL_MECHANISM")
  ),
  kafkaSaslUsername: Config.String("KAFKA_SASL_USERNAME").pipe(Config.withDefault("")),
  kafkaSaslPassword: Config.Redacted("KAFKA_SASL_PASSWORD").pipe(Config.withDefault(Redacted.make(""))),
  outboxBatch: intBetween("OUTBOX_BATCH", 1, 10_000).pipe(Config.withDefault(500)),
  outboxPollInterval: duration("OUTBOX_POLL_INTERVAL").pipe(Config.withDefault(Duration.millis(100))),
  outboxPublishTimeout: duration("OUTBOX_PUBLISH_TIMEOUT").pipe(Config.withDefault(Duration.seconds(10))),
  dbTimeout: duration("DB_TIMEOUT").pipe(Config.withDefault(Duration.seconds(5))),
  dbRetries: intBetween("DB_RETRIES", 0, 10).pipe(Config.withDefault(3)),
  dbRetryBase: duration("DB_RETRY_BASE").pipe(Config.withDefault(Duration.millis(50))),
  dbBreakerFailures: intBetween("DB_BREAKER_FAILURES", 1, 1000).pipe(Config.withDefault(5)),
  rateLimitRps: Config.schema(
    Schema.NumberFromString.check(
      Schema.isGreaterThan(0, { message: "expected a number of requests a second above 0" })
    ),
    "RATE_LIMIT_RPS"
  ).pipe(Config.withDefault(1000)),
  rateLimitBurst: intBetween("RATE_LIMIT_BURST", 1, 1_000_000).pipe(Config.withDefault(2000)),
  authCacheTtl: duration("AUTH_CACHE_TTL").pipe(Config.withDefault(Duration.seconds(30))),
  // Stream schemas (SPEC §2a): tenant schemas are untrusted, so they are bounded.
  maxSchemaBytes: bytes("MAX_SCHEMA_BYTES").pipe(Config.withDefault(64 * 1024)),
  schemaCheckRecords: intBetween("SCHEMA_CHECK_RECORDS", 1, 100_000).pipe(Config.withDefault(1000)),
  // How long a replica trusts its copy of a stream's current schema version.
  schemaCacheTtl: duration("SCHEMA_CACHE_TTL").pipe(Config.withDefault(Duration.seconds(2))),
  accessLog: Config.Boolean("ACCESS_LOG").pipe(Config.withDefault(true)),
  // Tracing (standard OpenTelemetry names): off unless an OTLP endpoint is set.
  otlpEndpoint: Config.option(httpUrl("OTEL_EXPORTER_OTLP_ENDPOINT")),
  otlpTracesEndpoint: Config.option(httpUrl("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
  otlpHeaders: Config.Redacted("OTEL_EXPORTER_OTLP_HEADERS").pipe(Config.withDefault(Redacted.make(""))),
  otlpProtocol: Config.Literals(["http/protobuf", "http/json"], "OTEL_EXPORTER_OTLP_PROTOCOL").pipe(
    Config.withDefault("http/protobuf")
  ),
  serviceName: Config.String("OTEL_SERVICE_NAME").pipe(Config.withDefault("strata")),
  tracesSampler: Config.Literals(TracesSampler, "OTEL_TRACES_SAMPLER").pipe(
    Config.withDefault("parentbased_traceidratio")
  ),
  tracesSamplerArg: Config.schema(
    Schema.NumberFromString.check(
      Schema.isBetween({ minimum: 0, maximum: 1 }, { message: "expected a ratio from 0 to 1, such as 0.01" })
    ),
    "OTEL_TRACES_SAMPLER_ARG"
  ).pipe(Config.withDefault(0.01))
})

export type Settings = Config.Success<typeof settings>

export class AppConfig extends Context.Service<AppConfig, Settings>()("strata/AppConfig") {
  /** Reads the environment (through the current ConfigProvider). */
  static readonly layer: Layer.Layer<AppConfig, Config.ConfigError> = Layer.effect(
    AppConfig,
    Effect.gen(function*() {
      return yield* settings
    })
  )

  /** Defaults with overrides, for tests and tools that do not read the environment. */
  static readonly layerWith = (overrides: Partial<Settings> = {}): Layer.Layer<AppConfig, Config.ConfigError> =>
    Layer.effect(
      AppConfig,
      Effect.gen(function*() {
        return { ...(yield* settings), ...overrides }
      })
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
