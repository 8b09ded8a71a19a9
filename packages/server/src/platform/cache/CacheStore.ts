/**
 * A string key-value cache with TTLs (README: Cache): Redis through ioredis
 * (`REDIS_URL`, or a Redis Cluster through `REDIS_CLUSTER_NODES`), or a bounded
 * in-process map when neither is set. Every call can fail with `CacheError`;
 * callers treat the cache as optional. Redis calls are spans and are measured.
 */
import { Cause, Clock, Context, Duration, Effect, Layer, Metric, Option, Redacted, Schema } from "effect"
import { Cluster, Redis } from "ioredis"
import { CacheConfig } from "../config/CacheConfig.ts"
import { labelled } from "../observability/Labels.ts"
import { keySlot } from "./KeySlot.ts"
import { type BucketLimit, type BucketTake, LocalBuckets, TAKE_TOKENS_LUA } from "./TokenBucket.ts"

/** SETs KEYS[i] to ARGV[2i-1] with a PX of ARGV[2i]: a write-through of many entries in one call. */
const SET_MANY_LUA = `
for i = 1, #KEYS do
  redis.call("SET", KEYS[i], ARGV[2 * i - 1], "PX", ARGV[2 * i])
end
return #KEYS
`

/**
 * MGET on a cluster, where one MGET must name keys of one slot: an MGET per
 * slot, all sent in this turn, so auto-pipelining sends those of one node
 * together (a round trip per node, not per key). Answers in the order of `keys`.
 */
const mgetBySlot = async (
  client: Cluster | Redis,
  prefix: string,
  keys: ReadonlyArray<string>
): Promise<Array<string | null>> => {
  const bySlot = new Map<number, Array<number>>()
  keys.forEach((key, i) => {
    const slot = keySlot(prefix + key) // the client adds the prefix; the slot is the whole key's
    const indexes = bySlot.get(slot)
    if (indexes === undefined) bySlot.set(slot, [i])
    else indexes.push(i)
  })
  const values: Array<string | null> = Array.from({ length: keys.length }, () => null)
  await Promise.all(
    Array.from(bySlot.values(), (indexes) =>
      client.mget(...indexes.map((i) => keys[i])).then((found) => {
        indexes.forEach((index, j) => values[index] = found[j])
      }))
  )
  return values
}

/** A time to live as Redis's PX: whole milliseconds, at least one. */
const pxOf = (ttl: Duration.Duration): number => Math.max(1, Math.round(Duration.toMillis(ttl)))

/** Buckets for calls that give up after CACHE_TIMEOUT (50 ms by default). */
const CACHE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5]

const callDuration = labelled((attributes) =>
  Metric.histogram("strata_cache_call_duration_seconds", {
    description: "Duration of Redis calls by operation and outcome (ok, error, timeout)",
    boundaries: CACHE_BUCKETS,
    attributes
  })
)

const callErrors = labelled((attributes) =>
  Metric.counter("strata_cache_call_errors_total", {
    description: "Failed Redis calls by operation and reason (error, or timeout: cut off by CACHE_TIMEOUT)",
    incremental: true,
    attributes
  })
)

export class CacheError extends Schema.TaggedError<CacheError>()("CacheError", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

export interface CacheEntry {
  readonly key: string
  readonly value: string
  readonly ttl: Duration.Duration
}

export class CacheStore extends Context.Service<CacheStore, {
  /** The values of `keys`, in their order, in one call (none where a key has none). */
  readonly getMany: (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Option.Option<string>>, CacheError>
  readonly setMany: (entries: ReadonlyArray<CacheEntry>) => Effect.Effect<void, CacheError>
  readonly ping: Effect.Effect<void, CacheError>
  /** Takes up to `wanted` tokens from the rate-limit bucket `key` (see TokenBucket.ts). */
  readonly takeTokens: (key: string, limit: BucketLimit, wanted: number) => Effect.Effect<BucketTake, CacheError>
  /** `redis`, `redis-cluster` or `memory`, for readiness and logs. */
  readonly kind: string
}>()("strata/cache/CacheStore") {
  /** Redis at `url` (or a cluster), keys prefixed with `prefix`. Connects lazily and never blocks startup. */
  static readonly layerRedis = (options: {
    readonly url?: Redacted.Redacted | undefined
    readonly clusterNodes?: ReadonlyArray<string> | undefined
    readonly prefix: string
  }): Layer.Layer<CacheStore> =>
    Layer.effect(
      CacheStore,
      Effect.gen(function*() {
        const common = {
          keyPrefix: options.prefix,
          lazyConnect: true,
          // Fail fast instead of queueing while Redis is away: reads fall back to the database.
          enableOfflineQueue: false,
          maxRetriesPerRequest: 0,
          retryStrategy: (attempt: number) => Math.min(attempt * 200, 2000)
        }
        const cluster = options.clusterNodes !== undefined && options.clusterNodes.length > 0
        const client = yield* Effect.acquireRelease(
          Effect.sync(() =>
            cluster
              ? new Cluster([...options.clusterNodes], {
                redisOptions: common,
                // connect() below then resolves once the slots are known (or fails).
                lazyConnect: true,
                enableOfflineQueue: false,
                // The commands of one turn that go to one node leave as one pipeline (see getMany).
                enableAutoPipelining: true
              })
              : new Redis(Redacted.value(options.url ?? Redacted.make("redis://127.0.0.1:6379")), common)
          ),
          (client) => Effect.promise(() => client.quit().catch(() => undefined))
        )
        client.on("error", () => undefined) // reported through the failing calls instead
        client.defineCommand("strataTakeTokens", { numberOfKeys: 1, lua: TAKE_TOKENS_LUA })
        // On one node, a write-through of many records is one script call: as a pipeline
        // each SET is a command object and a promise of its own, which showed in
        // profiles under mixed load. A script's keys must share a slot on a cluster, so
        // there each entry is a SET of its own.
        client.defineCommand("strataSetMany", { lua: SET_MANY_LUA })
        const setManyScript = (client as unknown as {
          strataSetMany: (count: number, ...keysThenValues: Array<string | number>) => Promise<number>
        }).strataSetMany.bind(client)
        const takeTokens = (key: string, limit: BucketLimit, wanted: number) =>
          (client as unknown as {
            strataTakeTokens: (key: string, rps: number, burst: number, wanted: number) => Promise<[number, string]>
          }).strataTakeTokens(key, limit.rps, limit.burst, wanted)
        yield* Effect.promise(() => client.connect().catch(() => undefined))
        const call = <A>(operation: string, f: () => Promise<A>) =>
          Effect.suspend(() => {
            const start = performance.now()
            return Effect.tryPromise({
              try: f,
              catch: (cause) => new CacheError({ message: `redis ${operation} failed`, cause })
            }).pipe(
              Effect.onExit((exit) => {
                const outcome = exit._tag === "Success"
                  ? "ok"
                  : Cause.hasInterruptsOnly(exit.cause)
                  ? "timeout"
                  : "error"
                const seconds = (performance.now() - start) / 1000
                return Effect.andThen(
                  Metric.update(callDuration({ operation, outcome }), seconds),
                  outcome === "ok"
                    ? Effect.void
                    : Metric.update(callErrors({ operation, reason: outcome }), 1)
                )
              })
            )
          }).pipe(
            Effect.withSpan(`Cache.${operation}`, {
              kind: "client",
              attributes: { "db.system.name": "redis", "db.operation.name": operation }
            }, { captureStackTrace: false }) // a stack per call costs on the hot path and says little here
          )
        return CacheStore.of({
          kind: cluster ? "redis-cluster" : "redis",
          getMany: (keys) =>
            Effect.map(
              call("get", () => cluster ? mgetBySlot(client, options.prefix, keys) : client.mget(...keys)),
              (values) => values.map(Option.fromNullishOr)
            ),
          setMany: (entries) =>
            entries.length === 0 ? Effect.void : Effect.asVoid(call("set", () => {
              if (!cluster) {
                const args: Array<string | number> = entries.map((e) => e.key)
                for (const e of entries) args.push(e.value, pxOf(e.ttl))
                return setManyScript(entries.length, ...args).then(() => undefined)
              }
              // One SET each, which auto-pipelining sends together per node: ioredis refuses
              // an explicit pipeline whose keys live on more than one node.
              return Promise.all(entries.map((e) => client.set(e.key, e.value, "PX", pxOf(e.ttl)))).then(() =>
                undefined
              )
            })),
          ping: Effect.asVoid(call("ping", () => client.ping())),
          takeTokens: (key, limit, wanted) =>
            Effect.map(
              call("takeTokens", () => takeTokens(key, limit, wanted)),
              ([granted, tokens]) => ({ granted, tokens: Number(tokens) })
            )
        })
      })
    )

  /**
   * In process, at most `maxEntries` (the oldest written go first). TTLs and
   * buckets run on the Clock the layer is built with, so tests can move time.
   */
  static readonly layerMemory = (maxEntries = 10_000): Layer.Layer<CacheStore> =>
    Layer.effect(
      CacheStore,
      Effect.map(Clock.clockWith(Effect.succeed), (clock) => {
        const now = () => clock.currentTimeMillisUnsafe()
        const entries = new Map<string, { readonly value: string; readonly expiresAt: number }>()
        const buckets = new LocalBuckets()
        return CacheStore.of({
          kind: "memory",
          getMany: (keys) =>
            Effect.sync(() =>
              keys.map((key) => {
                const entry = entries.get(key)
                if (entry === undefined) return Option.none()
                if (entry.expiresAt <= now()) {
                  entries.delete(key)
                  return Option.none()
                }
                return Option.some(entry.value)
              })
            ),
          setMany: (list) =>
            Effect.sync(() => {
              for (const e of list) {
                entries.delete(e.key) // re-insert at the end: Map keeps insertion order
                entries.set(e.key, { value: e.value, expiresAt: now() + Duration.toMillis(e.ttl) })
              }
              while (entries.size > maxEntries) entries.delete(entries.keys().next().value!)
            }),
          ping: Effect.void,
          takeTokens: (key, limit, wanted) => Effect.sync(() => buckets.take(key, limit, wanted, now()))
        })
      })
    )

  /** Redis when REDIS_URL or REDIS_CLUSTER_NODES is set, memory otherwise. */
  static readonly layerFromConfig: Layer.Layer<CacheStore, never, CacheConfig> = Layer.unwrap(Effect.gen(function*() {
    const config = yield* CacheConfig
    return Option.isNone(config.redisUrl) && config.redisClusterNodes.length === 0
      ? CacheStore.layerMemory(config.cacheMaxEntries)
      : CacheStore.layerRedis({
        url: Option.getOrUndefined(config.redisUrl),
        clusterNodes: config.redisClusterNodes,
        prefix: config.redisKeyPrefix
      })
  }))
}
