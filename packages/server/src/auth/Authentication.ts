/**
 * The `Authentication` middleware of the contract: verifies the bearer key,
 * checks the route's scope, applies the key's rate limit and hands the tenant
 * to the handlers as the `Principal`.
 *
 * Keys are verified through `VerifiedKeys` (in process for AUTH_CACHE_TTL).
 */
import { Authentication, Forbidden, Principal, RateLimited, RequiredScope, Unauthorized } from "@strata/domain"
import { Clock, Context, Effect, Layer, Option, Redacted } from "effect"
import { HttpEffect, HttpServerResponse } from "effect/http"
import type { BucketDecision, BucketLimit } from "../platform/cache/TokenBucket.ts"
import { LimitsConfig } from "../platform/config/LimitsConfig.ts"
import { unavailableOnTransient } from "../platform/http/Problems.ts"
import { RateLimits } from "./RateLimits.ts"
import { verdictOf, VerifiedKeys } from "./VerifiedKeys.ts"

/** Adds headers to whatever response this request ends with, problems included. */
const withResponseHeaders = (headers: Record<string, string>) =>
  HttpEffect.appendPreResponseHandler((_request, response) =>
    Effect.succeed(HttpServerResponse.setHeaders(response, headers))
  )

// A key's limit is one object for as long as the key is cached: its policy text is built once.
const policies = new WeakMap<BucketLimit, string>()

/** The `RateLimit-Policy` field of `limit`. */
export const rateLimitPolicy = (limit: BucketLimit): string => {
  let policy = policies.get(limit)
  if (policy === undefined) {
    policy = `"per-key";q=${limit.burst};w=${Math.max(1, Math.ceil(limit.burst / limit.rps))}`
    policies.set(limit, policy)
  }
  return policy
}

/** The `RateLimit` field after `decision`. */
export const rateLimitState = (decision: BucketDecision): string =>
  `"per-key";r=${decision.remaining};t=${decision.resetSeconds}`

/** IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers), on both request paths; a new object each time. */
export const rateLimitHeaders = (limit: BucketLimit, decision: BucketDecision): Record<string, string> => {
  const headers: Record<string, string> = {
    "ratelimit-policy": rateLimitPolicy(limit),
    ratelimit: rateLimitState(decision)
  }
  if (!decision.allowed) headers["retry-after"] = String(decision.retryAfterSeconds)
  return headers
}

const unauthorized = (detail: string, error?: "invalid_token") =>
  Effect.andThen(
    withResponseHeaders({
      "www-authenticate": error === undefined ? `Bearer realm="strata"` : `Bearer realm="strata", error="${error}"`
    }),
    Effect.fail(new Unauthorized({ detail }))
  )

export const layerAuthentication: Layer.Layer<Authentication, never, VerifiedKeys | RateLimits | LimitsConfig> = Layer
  .effect(
    Authentication,
    Effect.gen(function*() {
      const verified = yield* VerifiedKeys
      const limiter = yield* RateLimits
      const config = yield* LimitsConfig
      // Key expiry is judged on the Clock the layer is built with, read synchronously per request.
      const clock = yield* Clock.clockWith(Effect.succeed)

      return Authentication.of({
        bearer: (httpEffect, { credential, endpoint }) =>
          Effect.gen(function*() {
            const secret = Redacted.value(credential)
            if (secret === "") return yield* unauthorized("Send Authorization: Bearer <api key>.")
            const found = yield* verified.lookup(secret).pipe(
              Effect.catchTag("DbError", (error) =>
                unavailableOnTransient(error, "Cannot verify API keys right now; retry shortly."))
            )
            const scope = Option.getOrUndefined(Context.getOption(endpoint.annotations, RequiredScope))
            const key = Option.getOrUndefined(found)
            switch (verdictOf(key, scope, clock.currentTimeMillisUnsafe())) {
              case "unknown":
                return yield* unauthorized("The API key is unknown, revoked or expired.", "invalid_token")
              case "forbidden":
                return yield* new Forbidden({ detail: `This route needs the ${scope} scope.` })
            }
            const { id, rateLimit, scopes, tenant } = key!
            verified.markUsedUnsafe(id)
            const limit = rateLimit ?? { rps: config.rateLimitRps, burst: config.rateLimitBurst }
            const decision = yield* limiter.take(id, limit)
            yield* withResponseHeaders(rateLimitHeaders(limit, decision))
            if (!decision.allowed) {
              return yield* new RateLimited({
                detail: `Over this key's limit of ${limit.rps} requests a second (burst ${limit.burst}).`
              })
            }
            return yield* Effect.provideService(httpEffect, Principal, { tenant, keyId: id, scopes })
          })
      })
    })
  )
