/**
 * The PostgreSQL connection: a pool on DATABASE_URL, or, when none is given, an
 * embedded PGlite kept in DATA_DIR and served over a local socket so the same
 * `@effect/sql-pg` client and the same SQL run against it (README: Storage).
 */
import { PgClient } from "@effect/sql-pg"
import { PGlite } from "@electric-sql/pglite"
import { PGLiteSocketServer } from "@electric-sql/pglite-socket"
import { Effect, Layer, Option, Redacted } from "effect"
import type { SqlClient } from "effect/sql"
import { mkdirSync } from "node:fs"
import { DatabaseConfig, type PlanCacheMode } from "../config/DatabaseConfig.ts"
import { applicationName, layerPoolMetrics } from "../observability/DbMetrics.ts"
import { runMigrations } from "./Migrations.ts"

/** Opens PGlite in `dataDir` and serves it on a loopback port; answers its URL. */
export const startEmbedded = (dataDir: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      mkdirSync(dataDir, { recursive: true })
      const db = await PGlite.create(dataDir)
      // PGlite runs one query at a time; one connection with a pool of one is
      // the configuration that never stalls (more connections only queue).
      const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: 1 })
      await server.start()
      return { db, server, url: `postgres://postgres@${server.getServerConn()}/postgres` }
    }),
    ({ db, server }) =>
      Effect.promise(async () => {
        await server.stop()
        await db.close()
      })
  )

/**
 * How this process connects to a PostgreSQL node: the primary's pool and each
 * read replica's.
 *
 * `plan_cache_mode` (DATABASE_PLAN_CACHE_MODE): the driver prepares every
 * statement, but on the partitioned `records` PostgreSQL's default keeps
 * planning each execution afresh (a plan per parameter set looks cheaper than
 * one covering every partition), which cost more than the lookup itself: a read
 * by id planned in 0.094 ms and ran in 0.023. A generic plan prunes partitions
 * when it starts instead (docs/PERFORMANCE.md).
 */
export const poolConfig = (url: Redacted.Redacted, maxConnections: number, planCacheMode: PlanCacheMode) => ({
  url,
  maxConnections,
  applicationName,
  ...(planCacheMode === "server" ? {} : { startupParameters: { plan_cache_mode: planCacheMode } })
})

/** A pool on `url` with the configured size, its usage sampled as metrics. */
const pool = (url: Redacted.Redacted, maxConnections: number, planCacheMode: PlanCacheMode) =>
  layerPoolMetrics(maxConnections).pipe(
    Layer.provideMerge(PgClient.layer(poolConfig(url, maxConnections, planCacheMode)))
  )

/** PgClient and SqlClient for the configured database, migrated when MIGRATE_ON_START is on. */
export const layerConnection: Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, unknown, DatabaseConfig> = Layer
  .unwrap(
    Effect.gen(function*() {
      const config = yield* DatabaseConfig
      const client = yield* Option.match(config.databaseUrl, {
        onSome: (url) => Effect.succeed(pool(url, config.databasePoolMax, config.databasePlanCacheMode)),
        onNone: () =>
          Effect.map(
            startEmbedded(config.dataDir),
            ({ url }) => pool(Redacted.make(url), 1, config.databasePlanCacheMode)
          )
      })
      return config.migrateOnStart
        ? Layer.effectDiscard(runMigrations).pipe(Layer.provideMerge(client))
        : client
    })
  )
