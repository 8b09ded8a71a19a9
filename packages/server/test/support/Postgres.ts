/**
 * A fresh PostgreSQL database per test suite on the local server (127.0.0.1:5432),
 * dropped afterwards. Locally, a missing server skips the suite with a loud notice;
 * under CI=true it fails the run.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import { Reactivity } from "effect/reactivity"
import { randomBytes } from "node:crypto"

export const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? "postgres://root@127.0.0.1:5432/postgres"

const withAdmin = <A, E>(f: (sql: PgClient.PgClient) => Effect.Effect<A, E>) =>
  Effect.runPromise(
    Effect.scoped(Effect.flatMap(
      PgClient.make({ url: Redacted.make(ADMIN_URL), maxConnections: 1, connectTimeout: "3 seconds" }),
      f
    )).pipe(Effect.provide(Reactivity.layer))
  )

/** True when the local PostgreSQL answers; under CI=true, throws when it does not. */
export const postgresAvailable = async (): Promise<boolean> => {
  try {
    await withAdmin((sql) => sql`SELECT 1`)
    return true
  } catch (error) {
    if (process.env.CI === "true") {
      throw new Error(`PostgreSQL at ${ADMIN_URL} is required under CI=true`, { cause: error })
    }
    console.warn(`\n!!! PostgreSQL at ${ADMIN_URL} is unreachable: SKIPPING the PostgreSQL suites !!!\n`)
    return false
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
