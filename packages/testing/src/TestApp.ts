/**
 * Builds the whole HTTP app from layers, in process, as a fetch-style handler:
 * requests go through routing, middleware, handlers and encoding exactly as
 * over a socket. Tests choose the Db: in memory, a real PostgreSQL, or PGlite.
 * `makeSocketApp` serves the same app as main does instead: the Node server on
 * a loopback port with the hot routes in front, reached with `fetch`.
 * Requests carry an API key of tenant `test` (both scopes, no practical rate
 * limit) unless they pass another key, or `null` for none.
 * Given a `clock`, the services are built on it (they read time from the Clock
 * captured at build), so a TestClock moves their TTLs and expiry; `scopedTestApp`
 * passes the current fiber's, e.g. the TestClock of an `it.effect` test.
 */
import { PgClient } from "@effect/sql-pg"
import type { Scope } from "@strata/domain"
import {
  ApiKeys,
  AppConfig,
  AppRoutes,
  CacheStore,
  type ConfigServices,
  type EventBus,
  layerServer,
  layerStorage,
  layerStorageMemory,
  layerTracing,
  type RateLimitOverride,
  runMigrations,
  type Settings,
  startEmbedded,
  type Storage,
  withServices
} from "@strata/server"
import { Clock, Effect, Layer, ManagedRuntime, Redacted, type Scope as EffectScope } from "effect"
import { HttpRouter, HttpServer } from "effect/http"

export interface KeyOptions {
  readonly tenant?: string
  readonly scopes?: ReadonlyArray<Scope>
  readonly expiresAt?: Date
  readonly rateLimit?: RateLimitOverride
}

export interface TestApp {
  /** `key`: the API key to send; the `test` tenant's by default, `null` for none. */
  readonly request: (path: string, init?: RequestInit, key?: string | null) => Promise<Response>
  readonly json: (path: string, body: unknown, init?: RequestInit, key?: string | null) => Promise<Response>
  /** Makes an API key (and its tenant, if new); answers the secret. */
  readonly createKey: (options?: KeyOptions) => Promise<string>
  /** Runs an effect against the app's own stores. */
  readonly run: <A, E>(effect: Effect.Effect<A, E, Storage>) => Promise<A>
  readonly dispose: () => Promise<void>
  /** On a socket app: how many requests the hot routes answered themselves. */
  readonly hotAnswered?: () => number
}

export type DbLayer = Layer.Layer<Storage, unknown, ConfigServices>

export const memoryDb: DbLayer = layerStorageMemory

/** Db on PostgreSQL at `url`, migrated. */
export const pgDb = (url: string): DbLayer =>
  layerStorage.pipe(
    Layer.provideMerge(Layer.effectDiscard(runMigrations)),
    Layer.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 4 }))
  )

/** Db on an embedded PGlite in `dataDir`, migrated, through the same client. */
export const pgliteDb = (dataDir: string): DbLayer =>
  Layer.unwrap(Effect.map(startEmbedded(dataDir), ({ url }) =>
    layerStorage.pipe(
      Layer.provideMerge(Layer.effectDiscard(runMigrations)),
      Layer.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 }))
    )))

export const makeTestApp = (
  db: DbLayer,
  settings: Partial<Settings> = {},
  cache: Layer.Layer<CacheStore> = CacheStore.layerMemory(),
  bus?: Layer.Layer<EventBus>,
  clock?: Clock.Clock
): TestApp => {
  // Provided to the layers' construction only: requests themselves keep the live clock.
  const onClock = <A, E, R>(layer: Layer.Layer<A, E, R>) =>
    clock === undefined ? layer : Layer.provide(layer, Layer.succeed(Clock.Clock, clock))
  // As in main: tracing (off unless the settings name an OTLP endpoint) under
  // everything, and in the handler's context too, where request spans are made.
  const observability = layerTracing.pipe(Layer.provideMerge(AppConfig.layerWith({ accessLog: false, ...settings })))
  const services = onClock(
    withServices({ storage: db, cache, bus }).pipe(
      Layer.provideMerge(observability),
      Layer.provideMerge(HttpServer.layerServices)
    )
  )
  // One memo map: the runtime (for createKey/run) and the handler share one set of services.
  const memoMap = Layer.makeMemoMapUnsafe()
  const runtime = ManagedRuntime.make(services, { memoMap })
  const app = onClock(AppRoutes.pipe(Layer.provide(services), Layer.provideMerge(observability)))
  const { dispose, handler } = HttpRouter.toWebHandler(app, {
    disableLogger: true,
    memoMap
  })
  return withClient(runtime, handler, dispose)
}

/**
 * `makeTestApp` on the current fiber's Clock (under `it.effect`, the test's
 * TestClock), disposed when the scope closes.
 */
export const scopedTestApp = (
  db: DbLayer,
  settings: Partial<Settings> = {},
  cache: Layer.Layer<CacheStore> = CacheStore.layerMemory()
): Effect.Effect<TestApp, never, EffectScope.Scope> =>
  Effect.acquireRelease(
    Clock.clockWith((clock) => Effect.sync(() => makeTestApp(db, settings, cache, undefined, clock))),
    (app) => Effect.promise(() => app.dispose())
  )

/** The app on a real socket, hot routes first, as `main` serves it. */
export const makeSocketApp = async (
  db: DbLayer,
  settings: Partial<Settings> = {},
  cache: Layer.Layer<CacheStore> = CacheStore.layerMemory(),
  bus?: Layer.Layer<EventBus>
): Promise<TestApp> => {
  const observability = layerTracing.pipe(
    Layer.provideMerge(AppConfig.layerWith({ accessLog: false, port: 0, host: "127.0.0.1", ...settings }))
  )
  const services = withServices({ storage: db, cache, bus }).pipe(Layer.provideMerge(observability))
  let answered = 0
  const server = layerServer({
    fastPath: (hot) => ({
      serve: (request, response, handOver) => {
        const taken = hot.serve(request, response, (replay) => {
          answered--
          handOver(replay)
        })
        if (taken) answered++
        return taken
      }
    })
  }).pipe(Layer.provideMerge(services))
  const runtime = ManagedRuntime.make(server)
  const address = await runtime.runPromise(HttpServer.HttpServer.use((s) => Effect.succeed(s.address)))
  if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
  const base = `http://127.0.0.1:${address.port}`
  const client = withClient(runtime, (request) => {
    const url = new URL(request.url)
    return fetch(`${base}${url.pathname}${url.search}`, request)
  }, async () => {})
  return { ...client, hotAnswered: () => answered }
}

const withClient = (
  runtime: ManagedRuntime.ManagedRuntime<Storage, unknown>,
  handler: (request: Request) => Promise<Response>,
  dispose: () => Promise<void>
): TestApp => {
  const run = <A, E>(effect: Effect.Effect<A, E, Storage>) => runtime.runPromise(effect)
  const createKey = (options: KeyOptions = {}) =>
    run(Effect.gen(function*() {
      const keys = yield* ApiKeys
      const tenant = options.tenant ?? "test"
      yield* keys.createTenant(tenant).pipe(Effect.catchTag("TenantExists", () => Effect.void))
      const { secret } = yield* keys.createKey({
        tenant,
        scopes: options.scopes ?? ["records:read", "records:write"],
        expiresAt: options.expiresAt,
        rateLimit: options.rateLimit
      })
      return secret
    }))
  let defaultKey: Promise<string> | undefined
  const request = async (path: string, init?: RequestInit, key?: string | null) => {
    const secret = key === undefined
      ? await (defaultKey ??= createKey({
        rateLimit: { rps: 1e6, burst: 1e6 },
        scopes: ["records:read", "records:write", "schemas:write"]
      }))
      : key
    const headers = new Headers(init?.headers)
    if (secret !== null) headers.set("authorization", `Bearer ${secret}`)
    return handler(new Request(`http://strata.test${path}`, { ...init, headers }))
  }
  return {
    request,
    json: (path, body, init, key) =>
      request(path, {
        method: "POST",
        ...init,
        headers: { "content-type": "application/json", ...init?.headers },
        body: typeof body === "string" ? body : JSON.stringify(body)
      }, key),
    createKey,
    run,
    dispose: async () => {
      await dispose()
      await runtime.dispose()
    }
  }
}

/** An app made by `make`, disposed when the scope closes: the subject of a `describeBackends` suite. */
export const acquireApp = (make: () => TestApp | Promise<TestApp>): Effect.Effect<TestApp, never, EffectScope.Scope> =>
  Effect.acquireRelease(Effect.promise(async () => make()), (app) => Effect.promise(() => app.dispose()))
