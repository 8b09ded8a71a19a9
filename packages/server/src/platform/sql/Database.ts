/** Whether the database answers, for readiness: a `SELECT 1` under the database policy. */
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer } from "effect"
import type { DbError } from "./DbError.ts"
import { DbPolicy } from "./DbPolicy.ts"

export class Database extends Context.Service<Database, {
  /** Succeeds when the database answers. */
  readonly ping: Effect.Effect<void, DbError>
}>()("strata/sql/Database") {
  static readonly layerPg: Layer.Layer<Database, never, PgClient.PgClient | DbPolicy> = Layer.effect(
    Database,
    Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      const guard = yield* DbPolicy.callsOf("Db")
      return Database.of({ ping: guard("ping", Effect.asVoid(sql`SELECT 1`)) })
    })
  )

  /** No database to lose: always up. */
  static readonly layerMemory: Layer.Layer<Database> = Layer.succeed(Database, Database.of({ ping: Effect.void }))
}
