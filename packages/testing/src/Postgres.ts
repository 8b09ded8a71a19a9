/**
 * A fresh PostgreSQL database per test suite on the local server (127.0.0.1:5432),
 * dropped afterwards (`freshDatabase`, or `scopedDatabase` for a scope). A missing
 * server skips the suite locally and fails it under CI=true (Services.ts).
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted, type Scope } from "effect"
import { Reactivity } from "effect/reactivity"
import { randomBytes } from "node:crypto"
import { unavailable } from "./Services.ts"

export const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? "postgres://root@127.0.0.1:5432/postgres"

const withAdmin = <A, E>(f: (sql: PgClient.PgClient) => Effect.Effect<A, E>) =>
  Effect.runPromise(
    Effect.scoped(Effect.flatMap(
      PgClient.make({ url: Redacted.make(ADMIN_URL), maxConnections: 1, connectTimeout: "3 seconds" }),
      f
    )).pipe(Effect.provide(Reactivity.layer))
  )

/** True when the local PostgreSQL answers; otherwise the rule of `unavailable`. */
export const postgresAvailable = async (): Promise<boolean> => {
  try {
    await withAdmin((sql) => sql`SELECT 1`)
    return true
  } catch (error) {
    return unavailable(`PostgreSQL at ${ADMIN_URL}`, "the PostgreSQL suites", error)
  }
}

/** Creates an empty database and answers its URL and a function that drops it. */
export const freshDatabase = async (): Promise<{ url: string; drop: () => Promise<void> }> => {
  const name = `strata_test_${randomBytes(6).toString("hex")}`
  await withAdmin((sql) => sql`CREATE DATABASE ${sql(name)}`)
  const url = new URL(ADMIN_URL)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    drop: () => withAdmin((sql) => sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`).then(() => undefined)
  }
}

/** A fresh database for as long as the scope is open: its URL; dropped when the scope closes. */
export const scopedDatabase: Effect.Effect<string, never, Scope.Scope> = Effect.map(
  Effect.acquireRelease(Effect.promise(freshDatabase), (db) => Effect.promise(db.drop)),
  (db) => db.url
)
