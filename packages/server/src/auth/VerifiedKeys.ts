/**
 * API keys verified recently, kept in process for AUTH_CACHE_TTL so a request
 * costs no database read (a revoked key stops working within that time).
 * Keyed by the secret itself, so a hit costs no SHA-256 (it showed in
 * profiles); unknown keys are remembered too, so a flood of made-up keys does
 * not reach the database. `peek` answers synchronously for the hot routes;
 * `lookup` reads through, one database read per key at a time. A key in steady
 * use is read again in the background before its copy expires
 * (RefreshingCache), so its requests never wait for that read. When the
 * database cannot be read, an expired copy is trusted for AUTH_STALE_IF_ERROR more.
 * Last-used times are written in one statement a minute (and at shutdown).
 */
import type { Scope } from "@strata/domain"
import { Context, Duration, Effect, Layer, Option, Schedule } from "effect"
import { makeRefreshingCache } from "../platform/cache/RefreshingCache.ts"
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

export class VerifiedKeys extends Context.Service<VerifiedKeys, {
  /** The cached answer for `secret`: the key, `null` when known to be unknown, `undefined` when not cached. */
  readonly peekUnsafe: (secret: string) => ApiKeyInfo | null | undefined
  /** The key for `secret`, from the cache or the database. */
  readonly lookup: (secret: string) => Effect.Effect<Option.Option<ApiKeyInfo>, DbError>
  /** Notes a use of the key, written to the database within a minute. */
  readonly markUsedUnsafe: (keyId: string) => void
}>()("strata/auth/VerifiedKeys") {
  static readonly layer: Layer.Layer<VerifiedKeys, never, ApiKeys | CacheConfig> = Layer.effect(
    VerifiedKeys,
    Effect.gen(function*() {
      const keys = yield* ApiKeys
      const config = yield* CacheConfig
      // Unknown keys are held too (null), so a flood of made-up keys does not reach the database.
      const cached = yield* makeRefreshingCache<ApiKeyInfo | null, DbError>({
        ttlMs: Duration.toMillis(config.authCacheTtl),
        // Nothing can be revoked while the database is down; cached reads keep their keys through an outage.
        staleIfErrorMs: Duration.toMillis(config.authStaleIfError),
        capacity: MAX_KEYS,
        load: (secret) => Effect.map(keys.findByHash(hashApiKey(secret)), Option.getOrNull)
      })

      const peek = (secret: string): ApiKeyInfo | null | undefined => {
        const held = cached.peekUnsafe(secret)
        return held !== undefined ? held : looksLikeApiKey(secret) ? undefined : null
      }

      const lookup = (secret: string): Effect.Effect<Option.Option<ApiKeyInfo>, DbError> =>
        looksLikeApiKey(secret) ? Effect.map(cached.get(secret), Option.fromNullishOr) : Effect.succeedNone

      const used = new Set<string>()
      const flushLastUsed = Effect.suspend(() => {
        if (used.size === 0) return Effect.void
        const ids = [...used]
        used.clear()
        return keys.touch(ids, new Date())
      }).pipe(Effect.catch((error) => Effect.logWarning("Could not record API key use", error.message)))
      yield* Effect.forkScoped(Effect.repeat(flushLastUsed, Schedule.spaced(LAST_USED_EVERY)))
      yield* Effect.addFinalizer(() => flushLastUsed)

      return VerifiedKeys.of({ peekUnsafe: peek, lookup, markUsedUnsafe: (id) => void used.add(id) })
    })
  )
}
