/**
 * Per-key rate limits (SPEC §2): a token bucket per API key in Redis, shared by
 * every replica. When Redis does not answer within CACHE_TIMEOUT the bucket is
 * taken in process instead: limits then hold per replica rather than overall,
 * which is better than no limit and better than refusing service.
 */
import { Context, Effect, Layer, Metric } from "effect"
import { Cache } from "../cache/Cache.ts"
import { type BucketDecision, type BucketLimit, LocalBuckets } from "../cache/TokenBucket.ts"
import { AppConfig } from "../config/AppConfig.ts"

export const rateLimitDecisions = Metric.counter("strata_rate_limit_decisions_total", {
  description: "Rate-limit decisions by outcome (allowed, limited) and where the bucket lives (shared, local)"
})

export class RateLimiter extends Context.Service<RateLimiter, {
  readonly take: (keyId: string, limit: BucketLimit) => Effect.Effect<BucketDecision>
}>()("strata/RateLimiter") {
  static readonly layer: Layer.Layer<RateLimiter, never, Cache | AppConfig> = Layer.effect(
    RateLimiter,
    Effect.gen(function*() {
      const cache = yield* Cache
      const config = yield* AppConfig
      const local = new LocalBuckets()
      const count = (decision: BucketDecision, where: "shared" | "local") =>
        Metric.update(
          Metric.withAttributes(rateLimitDecisions, { outcome: decision.allowed ? "allowed" : "limited", where }),
          1
        ).pipe(Effect.as(decision))
      return RateLimiter.of({
        take: (keyId, limit) =>
          cache.takeToken(`ratelimit:${keyId}`, limit).pipe(
            Effect.timeout(config.cacheTimeout),
            Effect.flatMap((decision) => count(decision, "shared")),
            Effect.catch(() => count(local.take(keyId, limit), "local"))
          )
      })
    })
  )
}
