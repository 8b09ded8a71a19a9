/**
 * Builds the whole HTTP app from layers, in process, as a fetch-style handler:
 * requests go through routing, middleware, handlers and encoding exactly as
 * over a socket. Tests choose the Db: in memory, a real PostgreSQL, or PGlite.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted } from "effect"
import { HttpRouter, HttpServer } from "effect/http"
import { Cache } from "../../src/cache/Cache.ts"
import { AppConfig, type Settings } from "../../src/config/AppConfig.ts"
import { startEmbedded } from "../../src/db/Database.ts"
import type { Db } from "../../src/db/Db.ts"
import type { IdempotencyStore } from "../../src/db/IdempotencyStore.ts"
import { runMigrations } from "../../src/db/Migrations.ts"
import { type EventBus, MemoryEventBus } from "../../src/events/EventBus.ts"
import { AppRoutes, StorageLive, StorageMemory, withServices } from "../../src/http/App.ts"
import { TracingLive } from "../../src/observability/Tracing.ts"

export interface TestApp {
  readonly request: (path: string, init?: RequestInit) => Promise<Response>
  readonly json: (path: string, body: unknown, init?: RequestInit) => Promise<Response>
  readonly dispose: () => Promise<void>
}

export type DbLayer = Layer.Layer<Db | IdempotencyStore, unknown, AppConfig>

export const memoryDb: DbLayer = StorageMemory

/** Db on PostgreSQL at `url`, migrated. */
export const pgDb = (url: string): DbLayer =>
  StorageLive.pipe(
    Layer.provideMerge(Layer.effectDiscard(runMigrations)),
    Layer.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 4 }))
  )

/** Db on an embedded PGlite in `dataDir`, migrated, through the same client. */
export const pgliteDb = (dataDir: string): DbLayer =>
  Layer.unwrap(Effect.map(startEmbedded(dataDir), ({ url }) =>
    StorageLive.pipe(
      Layer.provideMerge(Layer.effectDiscard(runMigrations)),
      Layer.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 }))
    )))

export const makeTestApp = (
  db: DbLayer,
  settings: Partial<Settings> = {},
  cache: Layer.Layer<Cache> = Cache.layerMemory(),
  bus?: Layer.Layer<EventBus>
): TestApp => {
  // As in main: tracing (off unless the settings name an OTLP endpoint) under
  // everything, and in the handler's context too, where request spans are made.
  const observability = TracingLive.pipe(Layer.provideMerge(AppConfig.layerWith({ accessLog: false, ...settings })))
  const services = withServices(db, cache, bus ?? MemoryEventBus.layer).pipe(
    Layer.provideMerge(observability),
    Layer.provideMerge(HttpServer.layerServices)
  )
  const app = AppRoutes.pipe(Layer.provide(services), Layer.provideMerge(observability))
  const { dispose, handler } = HttpRouter.toWebHandler(app as any, {
    disableLogger: true
  })
  const request = (path: string, init?: RequestInit) => handler(new Request(`http://strata.test${path}`, init))
  return {
    request,
    json: (path, body, init) =>
      request(path, {
        method: "POST",
        ...init,
        headers: { "content-type": "application/json", ...init?.headers },
        body: typeof body === "string" ? body : JSON.stringify(body)
      }),
    dispose
  }
}
