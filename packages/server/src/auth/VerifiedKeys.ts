/**
 * API keys verified recently, kept in process for AUTH_CACHE_TTL so a request
 * costs no database read (a revoked key stops working within that time).
 * Keyed by the secret itself, so a hit costs no SHA-256 (it showed in
 * profiles); unknown keys are remembered too, so a flood of made-up keys does
 * not reach the database. `peek` answers synchronously for the hot routes;
 * `lookup` reads through, one database read per key at a time.
 * Last-used times are written in one statement a minute (and at shutdown).
 */
import type { Scope } from "@strata/domain"
import { Clock, Context, Duration, Effect, Layer, Option, Schedule } from "effect"
import { makeSingleFlight } from "../platform/cache/SingleFlight.ts"
import { CacheConfig } from "../platform/config/CacheConfig.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import { hashApiKey, looksLikeApiKey } from "./ApiKey.ts"
import { type ApiKeyInfo, ApiKeys } from "./ApiKeys.ts"

const LAST_USED_EVERY = Duration.minutes(1)
const MAX_KEYS = 100_000

/** Why a key may not make a request, or `ok`. */
export type KeyVerdict = "ok" | "unknown" | "forbidden"

/** The verdict on a key (none: unknown) for a route needing `scope`, at `now`. */
export const verdictOf = (key: ApiKeyInfo | undefined, scope: Scope | undefined, now: number): KeyVerdict => {
  if (key === undefined || key.revokedAt !== null || (key.expiresAt !== null && key.expiresAt.getTime() <= now)) {
    return "unknown"
  }
  return scope !== undefined && !key.scopes.includes(scope) ? "forbidden" : "ok"
}

interface Entry {
  readonly key: ApiKeyInfo | undefined
  readonly expiresAt: number
}

export class VerifiedKeys extends Context.Service<VerifiedKeys, {
  /** The cached answer for `secret`: the key, `null` when known to be unknown, `undefined` when not cached. */
  readonly peek: (secret: string) => ApiKeyInfo | null | undefined
  /** The key for `secret`, from the cache or the database. */
  readonly lookup: (secret: string) => Effect.Effect<Option.Option<ApiKeyInfo>, DbError>
  /** Notes a use of the key, written to the database within a minute. */
  readonly markUsed: (keyId: string) => void
}>()("strata/auth/VerifiedKeys") {
  static readonly layer: Layer.Layer<VerifiedKeys, never, ApiKeys | CacheConfig> = Layer.effect(
    VerifiedKeys,
    Effect.gen(function*() {
      const keys = yield* ApiKeys
      const config = yield* CacheConfig
      const ttl = Duration.toMillis(config.authCacheTtl)
      // Captured here: peek runs outside fibers, on the hot routes.
      const clock = yield* Clock.clockWith(Effect.succeed)
      const cached = new Map<string, Entry>()
      const singleFlight = makeSingleFlight<Option.Option<ApiKeyInfo>, DbError>()

      const peek = (secret: string): ApiKeyInfo | null | undefined => {
        const entry = cached.get(secret)
        if (entry === undefined) return looksLikeApiKey(secret) ? undefined : null
        if (entry.expiresAt <= clock.currentTimeMillisUnsafe()) {
          cached.delete(secret)
          return undefined
        }
        return entry.key ?? null
      }

      const remember = (secret: string, key: Option.Option<ApiKeyInfo>) => {
        // Oldest first out: a Map iterates in insertion order.
        if (cached.size >= MAX_KEYS) cached.delete(cached.keys().next().value!)
        cached.set(secret, { key: Option.getOrUndefined(key), expiresAt: clock.currentTimeMillisUnsafe() + ttl })
      }

      const lookup = (secret: string): Effect.Effect<Option.Option<ApiKeyInfo>, DbError> =>
        Effect.suspend(() => {
          const known = peek(secret)
          if (known !== undefined) return Effect.succeed(Option.fromNullishOr(known))
          return singleFlight(
            secret,
            keys.findByHash(hashApiKey(secret)).pipe(
              // A database failure is not remembered: the next request asks again.
              Effect.tap((found) => Effect.sync(() => remember(secret, found)))
            )
          )
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

      return VerifiedKeys.of({ peek, lookup, markUsed: (id) => void used.add(id) })
    })
  )
}
