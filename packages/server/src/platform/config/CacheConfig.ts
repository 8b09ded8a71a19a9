/**
 * Caching: Redis (or memory) and how long each cached copy is trusted, in Redis
 * and in process (records, API keys, stream schemas).
 */
import { Config, Context, Duration, Layer } from "effect"
import { type InvalidConfig, readAll, type Values } from "./Read.ts"
import { bytes, duration, intBetween } from "./Units.ts"

export const cacheFields = {
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
  authCacheTtl: duration("AUTH_CACHE_TTL").pipe(Config.withDefault(Duration.seconds(30))),
  // While the database cannot be read, a verified key's expired copy is still trusted this long.
  authStaleIfError: duration("AUTH_STALE_IF_ERROR").pipe(Config.withDefault(Duration.minutes(5))),
  // How long a replica trusts its copy of a stream's current schema version.
  schemaCacheTtl: duration("SCHEMA_CACHE_TTL").pipe(Config.withDefault(Duration.seconds(2)))
}

export type CacheSettings = Values<typeof cacheFields>

export class CacheConfig extends Context.Service<CacheConfig, CacheSettings>()("strata/config/CacheConfig") {
  static readonly layer: Layer.Layer<CacheConfig, InvalidConfig> = Layer.effect(CacheConfig, readAll(cacheFields))
}
