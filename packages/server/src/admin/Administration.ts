/**
 * Tenants and API keys as an operator manages them, with one set of rules for
 * the command-line tool (`pnpm strata tenants|keys …`) and the `/admin` routes:
 * tenant names, scopes, lifetimes and rate limits are checked here, then the
 * ApiKeys store does the work.
 */
import { type Scope, Scopes, TenantName } from "@strata/domain"
import { Clock, Duration, Effect, Result, Schema } from "effect"
import { type ApiKeyInfo, ApiKeys, type TenantExists, type TenantInfo } from "../auth/ApiKeys.ts"
import { LimitsConfig } from "../platform/config/LimitsConfig.ts"
import { parseDuration } from "../platform/config/Units.ts"
import type { DbError } from "../platform/sql/DbError.ts"

/** An input the rules refuse; `field` names it (`name`, `tenant`, `scopes`, `expires`, `rateLimit`). */
export class AdminInputError extends Schema.TaggedError<AdminInputError>()("AdminInputError", {
  field: Schema.String,
  message: Schema.String
}) {}

export const DEFAULT_SCOPES: ReadonlyArray<Scope> = ["records:read", "records:write"]

export const checkTenantName = (name: string, field = "name") =>
  Result.isSuccess(Schema.decodeUnknownResult(TenantName)(name))
    ? Effect.succeed(name)
    : Effect.fail(
      new AdminInputError({
        field,
        message: `tenant name ${JSON.stringify(name)}: lower-case letters, digits, - or _`
      })
    )

export const parseScopes = (input: string | ReadonlyArray<string>) => {
  const scopes = (typeof input === "string" ? input.split(",") : input).map((s) => s.trim()).filter((s) => s.length > 0)
  const unknown = scopes.filter((s) => !(Scopes as ReadonlyArray<string>).includes(s))
  return unknown.length > 0 || scopes.length === 0
    ? Effect.fail(new AdminInputError({ field: "scopes", message: `expected a list of ${Scopes.join(", ")}` }))
    : Effect.succeed([...new Set(scopes)] as Array<Scope>)
}

/** `expires` (a duration such as 30d) as the instant it ends, from the fiber's Clock. */
export const parseExpiry = (text: string | undefined) =>
  text === undefined ? Effect.succeed(undefined) : Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Effect.try({
      try: () => new Date(now + Duration.toMillis(parseDuration(text))),
      catch: () => new AdminInputError({ field: "expires", message: "expected a duration such as 30d, 12h or 90m" })
    }))

export interface KeyRequest {
  readonly tenant: string
  /** Comma-separated or a list; DEFAULT_SCOPES when absent. */
  readonly scopes?: string | ReadonlyArray<string> | undefined
  /** A lifetime such as 90d. */
  readonly expires?: string | undefined
  readonly rateLimitRps?: number | undefined
  readonly rateLimitBurst?: number | undefined
}

export const createTenant = (name: string): Effect.Effect<
  TenantInfo,
  AdminInputError | TenantExists | DbError,
  ApiKeys
> => Effect.flatMap(checkTenantName(name), (valid) => ApiKeys.use((keys) => keys.createTenant(valid)))

export const listTenants = ApiKeys.use((keys) => keys.listTenants)

/** Makes a key; the answer holds the secret, never shown again. */
export const createKey = (request: KeyRequest) =>
  Effect.gen(function*() {
    const config = yield* LimitsConfig
    const keys = yield* ApiKeys
    const tenant = yield* checkTenantName(request.tenant, "tenant")
    const scopes = request.scopes === undefined ? [...DEFAULT_SCOPES] : yield* parseScopes(request.scopes)
    const expiresAt = yield* parseExpiry(request.expires)
    const rps = request.rateLimitRps ?? config.rateLimitRps
    const burst = request.rateLimitBurst ?? config.rateLimitBurst
    if (!(rps > 0) || !(burst >= 1) || !Number.isInteger(burst)) {
      return yield* new AdminInputError({
        field: "rateLimit",
        message: "the rate limit must be above 0 a second, with a whole burst of at least 1"
      })
    }
    const custom = request.rateLimitRps !== undefined || request.rateLimitBurst !== undefined
    return yield* keys.createKey({ tenant, scopes, expiresAt, rateLimit: custom ? { rps, burst } : undefined })
  })

export const listKeys = (tenant: string) => ApiKeys.use((keys) => keys.listKeys(tenant))

export const revokeKey = (id: string) => ApiKeys.use((keys) => keys.revokeKey(id))

/** A key as the routes show it (dates as ISO strings). */
export const keyView = (k: ApiKeyInfo) => ({
  id: k.id,
  tenant: k.tenant,
  scopes: k.scopes,
  createdAt: k.createdAt.toISOString(),
  expiresAt: k.expiresAt?.toISOString() ?? null,
  revokedAt: k.revokedAt?.toISOString() ?? null,
  lastUsedAt: k.lastUsedAt?.toISOString() ?? null,
  rateLimit: k.rateLimit
})
