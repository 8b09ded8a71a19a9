/** What a tenant may do: the default rate limit, idempotency keys' lifetime, the bounds on stream schemas. */
import { Config, Context, Duration, Layer, Schema } from "effect"
import { type InvalidConfig, readAll, type Values } from "./Read.ts"
import { bytes, duration, intBetween } from "./Units.ts"

export const limitsFields = {
  rateLimitRps: Config.schema(
    Schema.NumberFromString.check(
      Schema.isGreaterThan(0, { message: "expected a number of requests a second above 0" })
    ),
    "RATE_LIMIT_RPS"
  ).pipe(Config.withDefault(1000)),
  rateLimitBurst: intBetween("RATE_LIMIT_BURST", 1, 1_000_000).pipe(Config.withDefault(2000)),
  idempotencyTtl: duration("IDEMPOTENCY_TTL").pipe(Config.withDefault(Duration.hours(24))),
  idempotencyLease: duration("IDEMPOTENCY_LEASE").pipe(Config.withDefault(Duration.minutes(1))),
  // Stream schemas (README: Schemas): tenant schemas are untrusted, so they are bounded.
  maxSchemaBytes: bytes("MAX_SCHEMA_BYTES").pipe(Config.withDefault(64 * 1024)),
  schemaCheckRecords: intBetween("SCHEMA_CHECK_RECORDS", 1, 100_000).pipe(Config.withDefault(1000))
}

export type LimitsSettings = Values<typeof limitsFields>

export class LimitsConfig extends Context.Service<LimitsConfig, LimitsSettings>()("strata/config/LimitsConfig") {
  static readonly layer: Layer.Layer<LimitsConfig, InvalidConfig> = Layer.effect(LimitsConfig, readAll(limitsFields))
}
