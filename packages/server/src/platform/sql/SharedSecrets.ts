/**
 * Secrets every replica on one database shares (the cursor key), made on first
 * use: the first replica's random value wins, the others read it.
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer } from "effect"
import { randomBytes } from "node:crypto"
import type { DbError } from "./DbError.ts"
import { DbPolicy } from "./DbPolicy.ts"

const newSecret = () => randomBytes(32).toString("base64url")

export class SharedSecrets extends Context.Service<SharedSecrets, {
  readonly get: (name: string) => Effect.Effect<string, DbError>
}>()("strata/sql/SharedSecrets") {
  static readonly layerPg: Layer.Layer<SharedSecrets, never, PgClient.PgClient | DbPolicy> = Layer.effect(
    SharedSecrets,
    Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      const guard = yield* DbPolicy.callsOf("Db")
      return SharedSecrets.of({
        get: (name) =>
          guard(
            "sharedSecret",
            Effect.gen(function*() {
              yield* sql`INSERT INTO strata_secrets (name, value)
                VALUES (${name}, ${newSecret()}) ON CONFLICT (name) DO NOTHING`
              const rows = yield* sql<{ readonly value: string }>`SELECT value FROM strata_secrets WHERE name = ${name}`
              return rows[0].value
            })
          )
      })
    })
  )

  static readonly layerMemory: Layer.Layer<SharedSecrets> = Layer.sync(SharedSecrets, () => {
    const secrets = new Map<string, string>()
    return SharedSecrets.of({
      get: (name) =>
        Effect.sync(() => {
          if (!secrets.has(name)) secrets.set(name, newSecret())
          return secrets.get(name)!
        })
    })
  })
}
