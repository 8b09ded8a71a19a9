/**
 * `/admin` (README: Administration over HTTP): tenants and keys over HTTP for keys with
 * the `admin` scope, through the same rules as the command-line tool.
 */
import { Api, Conflict, NewKey, NewTenant, NotFound, Unavailable } from "@strata/domain"
import { Effect } from "effect"
import { HttpServerResponse } from "effect/http"
import { HttpApiBuilder } from "effect/http-api"
import { ApiKeys } from "../auth/ApiKeys.ts"
import { HttpConfig } from "../platform/config/HttpConfig.ts"
import { LimitsConfig } from "../platform/config/LimitsConfig.ts"
import { readJsonBody } from "../platform/http/JsonBody.ts"
import { unavailableOnTransient } from "../platform/http/Problems.ts"
import { decodeAll, validationFailed } from "../platform/http/Validation.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import * as Admin from "./Administration.ts"

const answered = <A, R>(
  effect: Effect.Effect<
    A,
    | Admin.AdminInputError
    | DbError
    | { readonly _tag: "TenantExists"; readonly tenant: string }
    | { readonly _tag: "TenantNotFound"; readonly tenant: string }
    | { readonly _tag: "KeyNotFound"; readonly id: string },
    R
  >
) =>
  effect.pipe(
    Effect.catchTags({
      AdminInputError: (e) => Effect.fail(validationFailed([{ path: e.field, message: e.message }])),
      TenantExists: (e) => Effect.fail(new Conflict({ detail: `Tenant ${e.tenant} already exists` })),
      TenantNotFound: (e) => Effect.fail(new NotFound({ detail: `No tenant ${e.tenant}` })),
      KeyNotFound: (e) => Effect.fail(new NotFound({ detail: `No API key ${e.id}` })),
      DbError: (e): Effect.Effect<never, Unavailable> => unavailableOnTransient(e)
    })
  )

export const AdminHandlers = HttpApiBuilder.group(
  Api,
  "admin",
  Effect.fn(function*(handlers) {
    const keys = yield* ApiKeys
    const config = yield* HttpConfig
    const limits = yield* LimitsConfig
    const run = <A, E>(effect: Effect.Effect<A, E, ApiKeys | LimitsConfig>) =>
      effect.pipe(Effect.provideService(ApiKeys, keys), Effect.provideService(LimitsConfig, limits))
    // Bodies read by hand, as on /data, so a bad one is a 4xx problem of its own kind.
    const decodeTenant = decodeAll(NewTenant)
    const decodeKey = decodeAll(NewKey)
    return handlers
      .handleRaw("createTenant", ({ request }) =>
        Effect.gen(function*() {
          const body = yield* decodeTenant(yield* readJsonBody(request, config.maxBodyBytes))
          const tenant = yield* answered(run(Admin.createTenant(body.name)))
          return HttpServerResponse.text(
            JSON.stringify({ name: tenant.name, createdAt: tenant.createdAt.toISOString() }),
            { status: 201, contentType: "application/json" }
          )
        }))
      .handle("listTenants", () =>
        answered(run(Admin.listTenants)).pipe(
          Effect.map((tenants) => ({
            tenants: tenants.map((t) => ({ name: t.name, createdAt: t.createdAt.toISOString() }))
          }))
        ))
      .handleRaw("createKey", ({ params, request }) =>
        Effect.gen(function*() {
          const body = yield* decodeKey(yield* readJsonBody(request, config.maxBodyBytes))
          const { info, secret } = yield* answered(run(Admin.createKey({
            tenant: params.tenant,
            scopes: body.scopes,
            expires: body.expiresIn,
            rateLimitRps: body.rateLimitRps,
            rateLimitBurst: body.rateLimitBurst
          })))
          return HttpServerResponse.text(JSON.stringify({ key: Admin.keyView(info), secret }), {
            status: 201,
            contentType: "application/json"
          })
        }))
      .handle("listKeys", ({ params }) =>
        answered(run(Admin.listKeys(params.tenant))).pipe(
          Effect.map((keys) => ({ keys: keys.map(Admin.keyView) }))
        ))
      .handle("revokeKey", ({ params }) => answered(run(Admin.revokeKey(params.id))).pipe(Effect.map(Admin.keyView)))
  })
)
