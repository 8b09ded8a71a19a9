/**
 * Local use stays easy (no CLI step before the first curl): on the embedded
 * database, when no key exists yet, make a `dev` tenant with a key holding every
 * scope (admin included, to make more keys over HTTP) and print it once. Never with DATABASE_URL set: real deployments get
 * their keys from `pnpm strata keys create` only.
 */
import { Console, Effect, Option } from "effect"
import { DatabaseConfig } from "../platform/config/DatabaseConfig.ts"
import { ApiKeys } from "./ApiKeys.ts"

export const DEV_TENANT = "dev"

export const ensureDevelopmentKey = Effect.gen(function*() {
  const config = yield* DatabaseConfig
  if (Option.isSome(config.databaseUrl)) return
  const keys = yield* ApiKeys
  if (yield* keys.hasAnyKey) return
  yield* keys.createTenant(DEV_TENANT).pipe(Effect.catchTag("TenantExists", () => Effect.void))
  const { secret } = yield* keys.createKey({
    tenant: DEV_TENANT,
    scopes: ["records:read", "records:write", "schemas:write", "admin"]
  })
  // Straight to stdout rather than through the logger: the one place a secret is printed, on purpose.
  yield* Console.log(
    `\nDevelopment API key for tenant "${DEV_TENANT}" (shown only now; more with \`pnpm strata keys create\`):\n` +
      `\n  export STRATA_KEY=${secret}\n`
  )
})
