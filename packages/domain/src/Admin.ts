/**
 * Administration over HTTP (README: Administration over HTTP): tenants and their API
 * keys, for keys with the `admin` scope. Same rules as `pnpm strata`.
 */
import { Schema } from "effect"
import { Scope } from "./Auth.ts"

export const Tenant = Schema.Struct({
  name: Schema.String,
  createdAt: Schema.String
}).annotate({ identifier: "Tenant" })

export const TenantList = Schema.Struct({ tenants: Schema.Array(Tenant) }).annotate({ identifier: "TenantList" })

export const NewTenant = Schema.Struct({
  name: Schema.String.annotate({ description: "1–63 lower-case letters, digits, - or _" })
}).annotate({ identifier: "NewTenant" })

export const RateLimit = Schema.Struct({ rps: Schema.Number, burst: Schema.Int })

/** An API key as listed: never its secret. */
export const ApiKeyView = Schema.Struct({
  id: Schema.String,
  tenant: Schema.String,
  scopes: Schema.Array(Scope),
  createdAt: Schema.String,
  expiresAt: Schema.NullOr(Schema.String),
  revokedAt: Schema.NullOr(Schema.String),
  lastUsedAt: Schema.NullOr(Schema.String),
  rateLimit: Schema.NullOr(RateLimit)
}).annotate({ identifier: "ApiKey" })
export type ApiKeyView = typeof ApiKeyView.Type

export const ApiKeyList = Schema.Struct({ keys: Schema.Array(ApiKeyView) }).annotate({ identifier: "ApiKeyList" })

export const NewKey = Schema.Struct({
  scopes: Schema.optionalKey(Schema.Array(Schema.String)).annotate({
    description: "Default: records:read and records:write."
  }),
  expiresIn: Schema.optionalKey(Schema.String).annotate({ description: "A lifetime such as 90d, 12h or 30m." }),
  rateLimitRps: Schema.optionalKey(Schema.Number),
  rateLimitBurst: Schema.optionalKey(Schema.Int)
}).annotate({ identifier: "NewKey" })
export type NewKey = typeof NewKey.Type

export const CreatedKey = Schema.Struct({
  key: ApiKeyView,
  secret: Schema.String.annotate({ description: "The key itself: shown only in this answer." })
}).annotate({ identifier: "CreatedKey" })
