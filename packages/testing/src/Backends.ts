/**
 * The backend matrix: what a suite runs on, each made for that suite alone and
 * released after it (a fresh PostgreSQL database, dropped; a PGlite directory,
 * removed; a Redis key prefix of its own), with the one availability rule of
 * Services.ts. `describeBackends` runs one suite body once per backend.
 */
import { afterAll, beforeAll, describe, it } from "@effect/vitest"
import { CacheStore } from "@strata/server"
import { Effect, Exit, type Layer, Redacted, Scope } from "effect"
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { postgresAvailable, scopedDatabase } from "./Postgres.ts"
import { REDIS_URL, redisAvailable } from "./Redis.ts"
import { redisClusterAvailable, startRedisCluster } from "./RedisCluster.ts"
import { type DbLayer, memoryDb, pgDb, pgliteDb } from "./TestApp.ts"

export interface Backend<A> {
  /** Ends the suite's name: "records API" + " on PostgreSQL". */
  readonly title: string
  /**
   * "test" when every time it reads is the Effect Clock, so a TestClock moves it;
   * "real" when it keeps its own (a database's `now()`, Redis's expiry), so tests wait.
   */
  readonly clock: "test" | "real"
  /** Whether the service it needs answers (under CI=true, throws when it does not). */
  readonly available: () => Promise<boolean>
  /** What a suite runs on, made for it alone and released when the scope closes. */
  readonly acquire: Effect.Effect<A, never, Scope.Scope>
}

/** A Db backend's resource: the layer, and on PostgreSQL the database's URL for looks past the app. */
export interface Db {
  readonly layer: DbLayer
  readonly url?: string
}

/** A directory of its own under the system's temp dir, removed with everything in it when the scope closes. */
export const tempDirectory = (prefix: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), prefix))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

const always = async () => true

export const memory: Backend<Db> = {
  title: "on the in-memory Db",
  clock: "test",
  available: always,
  acquire: Effect.succeed({ layer: memoryDb })
}

export const postgres: Backend<Db> = {
  title: "on PostgreSQL",
  clock: "real",
  available: postgresAvailable,
  acquire: Effect.map(scopedDatabase, (url) => ({ layer: pgDb(url), url }))
}

export const pglite: Backend<Db> = {
  title: "on the embedded PGlite",
  clock: "real",
  available: always,
  acquire: Effect.map(tempDirectory("strata-pglite-"), (dir) => ({ layer: pgliteDb(dir) }))
}

/** Every Db: in memory, PostgreSQL, PGlite. */
export const backends: ReadonlyArray<Backend<Db>> = [memory, postgres, pglite]

export const memoryCache: Backend<Layer.Layer<CacheStore>> = {
  title: "in memory",
  clock: "test",
  available: always,
  acquire: Effect.sync(() => CacheStore.layerMemory())
}

export const redisCache: Backend<Layer.Layer<CacheStore>> = {
  title: "on Redis",
  clock: "real",
  available: redisAvailable,
  // A prefix of its own, so suites sharing the server never read each other's keys.
  acquire: Effect.sync(() =>
    CacheStore.layerRedis({ url: Redacted.make(REDIS_URL), prefix: `strata-test-${randomBytes(4).toString("hex")}:` })
  )
}

export const redisClusterCache: Backend<Layer.Layer<CacheStore>> = {
  title: "on a Redis Cluster",
  clock: "real",
  available: redisClusterAvailable,
  // Six nodes of the suite's own (RedisCluster.ts), stopped after it.
  acquire: Effect.map(
    Effect.acquireRelease(Effect.promise(() => startRedisCluster()), (cluster) => Effect.promise(cluster.stop)),
    (cluster) => CacheStore.layerRedis({ clusterNodes: cluster.seeds.split(","), prefix: "strata-test:" })
  )
}

/** Every CacheStore: in memory, the shared Redis and a Redis Cluster. */
export const cacheBackends: ReadonlyArray<Backend<Layer.Layer<CacheStore>>> = [
  memoryCache,
  redisCache,
  redisClusterCache
]

export interface BackendSuite<S> {
  /** A test against the suite's subject; skipped when the backend is unavailable. */
  readonly test: (title: string, f: (subject: S) => Promise<void>, timeout?: number) => void
  /** The subject once made: undefined before the suite's tests and when the backend is unavailable. */
  readonly subject: () => S | undefined
}

/**
 * One `describe` per backend, named `${name} ${backend.title}`. Before its tests,
 * the backend's resource is acquired and `setup` makes the suite's subject from it
 * (an app, say); after them, both are released, the subject first.
 */
export const describeBackends = <A, S>(
  name: string,
  of: ReadonlyArray<Backend<A>>,
  setup: (resource: A, backend: Backend<A>) => Effect.Effect<S, unknown, Scope.Scope>,
  tests: (suite: BackendSuite<S>, backend: Backend<A>) => void
): void => {
  for (const backend of of) {
    describe(`${name} ${backend.title}`, () => {
      let scope: Scope.Closeable | undefined
      let subject: S | undefined
      beforeAll(async () => {
        if (!(await backend.available())) return
        scope = Effect.runSync(Scope.make())
        subject = await Effect.runPromise(
          Scope.provide(scope)(Effect.flatMap(backend.acquire, (resource) => setup(resource, backend)))
        )
      }, 60_000)
      afterAll(async () => {
        if (scope !== undefined) await Effect.runPromise(Scope.close(scope, Exit.void))
      }, 60_000)
      tests({
        test: (title, f, timeout = 30_000) =>
          it(title, async (ctx) => {
            if (subject === undefined) return ctx.skip()
            await f(subject)
          }, timeout),
        subject: () => subject
      }, backend)
    })
  }
}
