/**
 * Per-key rate limits (README: The API): a token bucket per API key in Redis, shared by
 * every replica. A round trip to Redis per request would cost a large part of
 * a cached read (docs/PERFORMANCE.md), so a replica leases tokens: it
 * takes up to 50 ms worth of the key's rate at once (never more than 5 % of the
 * burst, at least one) and hands them out locally for up to a second. Keys with
 * small limits lease one token at a time, i.e. are exact; a busy key may exceed
 * its limit by at most one lease per replica. A refused key is refused locally
 * until its next token is due, so a client hammering past its limit does not
 * hammer Redis too.
 *
 * A lease in use is topped up in the background before it runs dry or lapses
 * (a quarter of its tokens or of its second left), back to one lease's worth:
 * otherwise every request of a busy key that arrives while the next lease is
 * fetched takes the slow way (the hot routes hand it to the app, which waits
 * for Redis), a stall once a second under load.
 *
 * When Redis does not answer within CACHE_TIMEOUT the bucket is taken in
 * process instead: limits then hold per replica rather than overall, which is
 * better than no limit and better than refusing service.
 */
import { Clock, Context, Deferred, Duration, Effect, FiberSet, Layer, Metric } from "effect"
import { CacheStore } from "../platform/cache/CacheStore.ts"
import { type BucketDecision, type BucketLimit, decide, LocalBuckets } from "../platform/cache/TokenBucket.ts"
import { CacheConfig } from "../platform/config/CacheConfig.ts"
import { labelled } from "../platform/observability/Labels.ts"
import { withDeadline } from "../platform/runtime/Deadline.ts"

const decisions = labelled((attributes) =>
  Metric.counter("strata_rate_limit_decisions_total", {
    description: "Rate-limit decisions by outcome (allowed, limited) and where the bucket lives (shared, local)",
    attributes
  })
)

const LEASE_MS = 1000
const SHARED_RETRY_MS = 1000

/** How many tokens a replica takes from the shared bucket at once. */
export const leaseSize = (limit: BucketLimit): number =>
  Math.max(1, Math.floor(Math.min(limit.rps * 0.05, limit.burst * 0.05)))

interface Lease {
  /** Leased tokens left. */
  tokens: number
  /** A refusal that holds until `expiresAt`, when the next token is due. */
  readonly refused: boolean
  readonly expiresAt: number
  /** Tokens the shared bucket held after the lease was taken. */
  readonly shared: number
}

export class RateLimits extends Context.Service<RateLimits, {
  readonly take: (keyId: string, limit: BucketLimit) => Effect.Effect<BucketDecision>
  /**
   * A token from this replica's lease, synchronously (for the hot routes):
   * undefined when the lease is used up, expired or refusing, so `take` must decide.
   */
  readonly takeLeasedUnsafe: (keyId: string, limit: BucketLimit) => BucketDecision | undefined
}>()("strata/auth/RateLimits") {
  static readonly layer: Layer.Layer<RateLimits, never, CacheStore | CacheConfig> = Layer.effect(
    RateLimits,
    Effect.gen(function*() {
      const cache = yield* CacheStore
      const config = yield* CacheConfig
      const context = yield* Effect.context<never>()
      // Lease top-ups run in the background, owned by the layer's scope.
      const runInBackground = yield* FiberSet.makeRuntime<never>()
      // Captured here: takeLeased runs outside fibers, on the hot routes.
      const clock = yield* Clock.clockWith(Effect.succeed)
      const now = () => clock.currentTimeMillisUnsafe()
      const local = new LocalBuckets()
      const leases = new Map<string, Lease>()
      const cacheTimeoutMs = Duration.toMillis(config.cacheTimeout)
      const allowedShared = decisions({ outcome: "allowed", where: "shared" })
      const count = (decision: BucketDecision, where: "shared" | "local") =>
        Metric.update(decisions({ outcome: decision.allowed ? "allowed" : "limited", where }), 1).pipe(
          Effect.as(decision)
        )

      // One lease request per key at a time: concurrent requests wait for it and
      // share it, rather than each draining the shared bucket by a whole lease.
      const pending = new Map<string, Deferred.Deferred<void>>()
      /** Runs `call` as the key's one lease request: later requests for the key wait for it. */
      const asPending = <A, E>(keyId: string, call: Effect.Effect<A, E>) => {
        const done = Deferred.makeUnsafe<void>()
        pending.set(keyId, done)
        return Effect.ensuring(
          call,
          Effect.suspend(() => {
            pending.delete(keyId)
            return Deferred.succeed(done, undefined)
          })
        )
      }

      /** `wanted` tokens from the key's shared bucket in Redis, within CACHE_TIMEOUT. */
      const takeShared = (keyId: string, limit: BucketLimit, wanted: number) =>
        withDeadline(
          cache.takeTokens(`ratelimit:${keyId}`, limit, wanted),
          cacheTimeoutMs,
          () => Effect.fail("timeout" as const)
        )

      const fromLease = (keyId: string, limit: BucketLimit): BucketDecision | undefined => {
        const lease = leases.get(keyId)
        const at = now()
        if (lease === undefined || lease.expiresAt <= at) return undefined
        if (lease.refused) return decide(false, lease.shared, limit)
        if (lease.tokens < 1) return undefined
        lease.tokens--
        const size = leaseSize(limit)
        if ((lease.tokens * 4 < size || (lease.expiresAt - at) * 4 < LEASE_MS) && !pending.has(keyId)) {
          runInBackground(topUp(keyId, limit, size))
        }
        return decide(true, lease.shared + lease.tokens, limit)
      }

      /**
       * Refills a lease in use to `size` tokens for another second, in the background.
       * Tokens already leased stay counted: the replica never holds more than one
       * lease. An empty shared bucket or a Redis failure leaves the lease as it is;
       * when it runs out, `take` finds out and answers as usual.
       */
      const topUp = (keyId: string, limit: BucketLimit, size: number) =>
        asPending(
          keyId,
          takeShared(keyId, limit, Math.max(1, size - (leases.get(keyId)?.tokens ?? 0))).pipe(
            Effect.map(({ granted, tokens }) => {
              const lease = leases.get(keyId)
              if (granted === 0 || lease === undefined || lease.refused) return
              const held = Math.max(0, lease.tokens) + granted
              leases.set(keyId, {
                tokens: held,
                refused: false,
                expiresAt: now() + LEASE_MS,
                // The bucket refilled while this replica held its tokens: what a request
                // is told is left (shared + held) must not pass the burst.
                shared: Math.min(tokens, limit.burst - held)
              })
            }),
            Effect.ignore
          )
        )

      const fromShared = (keyId: string, limit: BucketLimit) =>
        takeShared(keyId, limit, leaseSize(limit)).pipe(
          Effect.map(({ granted, tokens }) => {
            const at = now()
            if (granted === 0) {
              // The shared bucket gains its next whole token this much later, whoever asks.
              leases.set(keyId, {
                tokens: 0,
                refused: true,
                expiresAt: at + ((1 - tokens) / limit.rps) * 1000,
                shared: tokens
              })
              return decide(false, tokens, limit)
            }
            if (granted > 1) {
              leases.set(keyId, { tokens: granted - 1, refused: false, expiresAt: at + LEASE_MS, shared: tokens })
            } else leases.delete(keyId)
            return decide(true, tokens + granted - 1, limit)
          })
        )

      const fromLocal = (keyId: string, limit: BucketLimit) => {
        const { granted, tokens } = local.take(keyId, limit, 1, now())
        return decide(granted === 1, tokens, limit)
      }

      // After a failed or slow call, Redis is skipped for a while: requests must
      // not queue one by one behind calls that each wait CACHE_TIMEOUT.
      let sharedDownUntil = 0
      const take = (keyId: string, limit: BucketLimit): Effect.Effect<BucketDecision> =>
        Effect.suspend(() => {
          const leased = fromLease(keyId, limit)
          if (leased !== undefined) return count(leased, "shared")
          if (now() < sharedDownUntil) return count(fromLocal(keyId, limit), "local")
          const inFlight = pending.get(keyId)
          if (inFlight !== undefined) return Effect.andThen(Deferred.await(inFlight), take(keyId, limit))
          return asPending(
            keyId,
            fromShared(keyId, limit).pipe(
              Effect.flatMap((decision) => count(decision, "shared")),
              Effect.catch(() => {
                sharedDownUntil = now() + SHARED_RETRY_MS
                return count(fromLocal(keyId, limit), "local")
              })
            )
          )
        })

      const takeLeased = (keyId: string, limit: BucketLimit): BucketDecision | undefined => {
        // A refusal is `take`'s to answer (and count): only granted tokens are taken here.
        const decision = fromLease(keyId, limit)
        if (decision === undefined || !decision.allowed) return undefined
        allowedShared.updateUnsafe(1, context)
        return decision
      }

      return RateLimits.of({ take, takeLeasedUnsafe: takeLeased })
    })
  )
}
