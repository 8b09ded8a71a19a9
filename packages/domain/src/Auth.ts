/**
 * Authentication and tenants (README: The API): every `/data` route needs
 * `Authorization: Bearer <api key>`. The key names one tenant and its scopes;
 * each route declares the scope it needs.
 */
import { Context, Schema } from "effect"
import { HttpApiMiddleware, HttpApiSecurity, OpenApi } from "effect/http-api"
import { Forbidden, RateLimited, Unauthorized, Unavailable } from "./Problems.ts"

/** `schemas:write` registers stream schemas (reading them needs `records:read`); `admin` manages tenants and keys. */
export const Scopes = ["records:read", "records:write", "schemas:write", "admin"] as const
export const Scope = Schema.Literals(Scopes)
export type Scope = typeof Scope.Type

/** Tenant names: lower-case letters, digits, `-` and `_`, 1–63 characters. */
export const TenantName = Schema.String.check(
  Schema.isPattern(/^[a-z0-9][a-z0-9_-]{0,62}$/, {
    message: "must be 1–63 lower-case letters, digits, - or _, starting with a letter or digit"
  })
)

/** Who a request acts for, once its key is verified. */
export class Principal extends Context.Service<Principal, {
  readonly tenant: string
  readonly keyId: string
  readonly scopes: ReadonlyArray<Scope>
}>()("strata/Principal") {}

/** The scope an endpoint needs, as an endpoint annotation. */
export class RequiredScope extends Context.Service<RequiredScope, Scope>()("strata/RequiredScope") {}

/**
 * The bearer-key check on every `/data` route: 401 for a missing or unknown key,
 * 403 for a key without the route's scope, 429 past the key's rate limit.
 */
export class Authentication extends HttpApiMiddleware.Service<Authentication, { provides: Principal }>()(
  "strata/Authentication",
  {
    security: {
      bearer: HttpApiSecurity.bearer.pipe(
        HttpApiSecurity.annotate(OpenApi.Format, "strata_…"),
        HttpApiSecurity.annotate(
          OpenApi.Description,
          "An API key made with `pnpm strata keys create`. Scopes: records:read (GET routes), records:write (POST /data routes), schemas:write (registering schemas), admin (tenants and keys)."
        )
      )
    },
    error: [Unauthorized, Forbidden, RateLimited, Unavailable]
  }
) {}
