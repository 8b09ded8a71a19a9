/**
 * The `Authentication` middleware of the contract: verifies the bearer key,
 * checks the route's scope, applies the key's rate limit and hands the tenant
 * to the handlers as the `Principal`.
 *
 * Verified keys are kept in process for AUTH_CACHE_TTL, so a request costs no
 * database read; a revoked key stops working within that time. Unknown keys are
 * cached as well (bounded), so a flood of made-up keys does not reach the
 * database either. Last-used times are written in one statement a minute.
 */
import {
  Authentication,
  Forbidden,
  Principal,
  RateLimited,
  RequiredScope,
  Unauthorized,
  Unavailable
} from "@strata/domain"
import { Cache, Context, Duration, Effect, Exit, Layer, Option, Redacted, Schedule } from "effect"
import { HttpEffect, HttpServerResponse } from "effect/http"
import type { BucketDecision, BucketLimit } from "../cache/TokenBucket.ts"
import { AppConfig } from "../config/AppConfig.ts"
import { hashApiKey, looksLikeApiKey } from "./ApiKey.ts"
import { ApiKeys } from "./ApiKeys.ts"
import { RateLimiter } from "./RateLimiter.ts"

const LAST_USED_EVERY = Duration.minutes(1)

/** Adds headers to whatever response this request ends with, problems included. */
const withResponseHeaders = (headers: Record<string, string>) =>
  HttpEffect.appendPreResponseHandler((_request, response) =>
    Effect.succeed(HttpServerResponse.setHeaders(response, headers))
  )

/** IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers). */
const rateLimitHeaders = (limit: BucketLimit, decision: BucketDecision): Record<string, string> => ({
  "ratelimit-policy": `"per-key";q=${limit.burst};w=${Math.max(1, Math.ceil(limit.burst / limit.rps))}`,
  ratelimit: `"per-key";r=${decision.remaining};t=${decision.resetSeconds}`,
  ...(decision.allowed ? {} : { "retry-after": String(decision.retryAfterSeconds) })
})

const unauthorized = (detail: string, error?: "invalid_token") =>
  Effect.andThen(
    withResponseHeaders({
      "www-authenticate": error === undefined ? `Bearer realm="strata"` : `Bearer realm="strata", error="${error}"`
    }),
    Effect.fail(new Unauthorized({ detail }))
  )

export const AuthenticationLive: Layer.Layer<Authentication, never, ApiKeys | RateLimiter | AppConfig> = Layer
  .effect(
    Authentication,
    Effect.gen(function*() {
      const keys = yield* ApiKeys
      const limiter = yield* RateLimiter
      const config = yield* AppConfig
      // Keyed by the key itself, so a hit costs no SHA-256 (which showed in profiles);
      // the hash is computed once, on a miss.
      const verified = yield* Cache.makeWith((secret: string) => keys.findByHash(hashApiKey(secret)), {
        capacity: 100_000,
        // A database failure is not remembered: the next request asks again.
        timeToLive: (exit) => Exit.isSuccess(exit) ? config.authCacheTtl : Duration.zero
      })

      const used = new Set<string>()
      const flushLastUsed = Effect.suspend(() => {
        if (used.size === 0) return Effect.void
        const ids = [...used]
        used.clear()
        return keys.touch(ids, new Date())
      }).pipe(Effect.catch((error) => Effect.logWarning("Could not record API key use", error.message)))
      yield* Effect.forkScoped(Effect.repeat(flushLastUsed, Schedule.spaced(LAST_USED_EVERY)))
      yield* Effect.addFinalizer(() => flushLastUsed)

      return Authentication.of({
        bearer: (httpEffect, { credential, endpoint }) =>
          Effect.gen(function*() {
            const secret = Redacted.value(credential)
            if (secret === "") return yield* unauthorized("Send Authorization: Bearer <api key>.")
            const found = looksLikeApiKey(secret)
              ? yield* Cache.get(verified, secret).pipe(
                Effect.catchTag("DbError", (error) =>
                  error.transient
                    ? Effect.fail(new Unavailable({ detail: "Cannot verify API keys right now; retry shortly." }))
                    : Effect.die(error))
              )
              : Option.none()
            const now = Date.now()
            if (
              Option.isNone(found) || found.value.revokedAt !== null ||
              (found.value.expiresAt !== null && found.value.expiresAt.getTime() <= now)
            ) {
              return yield* unauthorized("The API key is unknown, revoked or expired.", "invalid_token")
            }
            const key = found.value
            const scope = Context.getOption(endpoint.annotations, RequiredScope)
            if (Option.isSome(scope) && !key.scopes.includes(scope.value)) {
              return yield* new Forbidden({ detail: `This route needs the ${scope.value} scope.` })
            }
            used.add(key.id)
            const limit = key.rateLimit ?? { rps: config.rateLimitRps, burst: config.rateLimitBurst }
            const decision = yield* limiter.take(key.id, limit)
            yield* withResponseHeaders(rateLimitHeaders(limit, decision))
            if (!decision.allowed) {
              return yield* new RateLimited({
                detail: `Over this key's limit of ${limit.rps} requests a second (burst ${limit.burst}).`
              })
            }
            return yield* Effect.provideService(httpEffect, Principal, {
              tenant: key.tenant,
              keyId: key.id,
              scopes: key.scopes
            })
          })
      })
    })
  )
