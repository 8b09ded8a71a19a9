/**
 * The HTTP application and the services behind it. `AppRoutes`: the contract's
 * routes with their handlers, the OpenAPI document, its reading page and
 * `/metrics`, wrapped in admission control, request ids, each request's
 * bookkeeping (metrics, access line) and the caller's trace context.
 * `withServices` assembles the services around stores, a cache and an event bus:
 * main passes the real ones, tests in-memory ones or any mix. `layerServer`
 * serves the app on the Node server with the hot routes in front: the one
 * builder of the served app, for main, the test support and the client's tests.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { Api, RequestValidation, type ValidationFailed } from "@strata/domain"
import { Effect, Layer, type Types } from "effect"
import { HttpRouter } from "effect/http"
import { HttpApiBuilder, HttpApiError, HttpApiScalar } from "effect/http-api"
import { PrometheusMetrics } from "effect/observability"
import { AdminHandlers } from "./admin/AdminHandlers.ts"
import { ApiKeys } from "./auth/ApiKeys.ts"
import { layerAuthentication } from "./auth/Authentication.ts"
import { RateLimits } from "./auth/RateLimits.ts"
import { VerifiedKeys } from "./auth/VerifiedKeys.ts"
import { ChangeFeed } from "./changes/ChangeFeed.ts"
import { ChangesHandlers } from "./changes/ChangesHandlers.ts"
import { EventBus } from "./events/EventBus.ts"
import { HeldRecords } from "./events/HeldRecords.ts"
import { layerOutboxRelay } from "./events/OutboxRelay.ts"
import { OutboxStore } from "./events/OutboxStore.ts"
import { HealthHandlers, Lifecycle } from "./health/HealthHandlers.ts"
import { IdempotencyStore } from "./idempotency/IdempotencyStore.ts"
import { layerMaintenance } from "./maintenance/Maintenance.ts"
import { CacheStore } from "./platform/cache/CacheStore.ts"
import { HttpConfig } from "./platform/config/HttpConfig.ts"
import { Admission } from "./platform/http/Admission.ts"
import { type FastPath, makeNodeServer } from "./platform/http/NodeServer.ts"
import { withProblemFallback } from "./platform/http/ProblemFallback.ts"
import { withRequestIdInProblems } from "./platform/http/Problems.ts"
import { withRequestId } from "./platform/http/RequestId.ts"
import { toFieldErrors, validationFailed } from "./platform/http/Validation.ts"
import { RequestBookkeeping } from "./platform/observability/RequestBookkeeping.ts"
import { layerRuntimeMetrics } from "./platform/observability/RuntimeMetrics.ts"
import { withTraceContext } from "./platform/observability/Tracing.ts"
import { Database } from "./platform/sql/Database.ts"
import { DbPolicy } from "./platform/sql/DbPolicy.ts"
import { ReadReplicas } from "./platform/sql/ReadReplicas.ts"
import { SharedSecrets } from "./platform/sql/SharedSecrets.ts"
import { BulkIngest } from "./records/BulkIngest.ts"
import { ChangeLog } from "./records/ChangeLog.ts"
import { Cursors } from "./records/Cursor.ts"
import { HotRoutes } from "./records/HotRoutes.ts"
import { MemoryTables } from "./records/MemoryTables.ts"
import { Positions } from "./records/Positions.ts"
import { RecordCache } from "./records/RecordCache.ts"
import { RecordExport } from "./records/RecordExport.ts"
import { RecordPartitions } from "./records/RecordPartitions.ts"
import { Records } from "./records/Records.ts"
import { RecordsHandlers } from "./records/RecordsHandlers.ts"
import { RecordStore } from "./records/RecordStore.ts"
import { RecordWriter } from "./records/RecordWriter.ts"
import { SchemaCompiler } from "./schemas/SchemaCompiler.ts"
import { SchemaRegistry } from "./schemas/SchemaRegistry.ts"
import { StreamIndexes } from "./schemas/StreamIndexes.ts"
import { StreamSamples } from "./schemas/StreamSamples.ts"
import { StreamSchemas } from "./schemas/StreamSchemas.ts"
import { StreamsHandlers } from "./schemas/StreamsHandlers.ts"

/**
 * The middleware on every endpoint of the contract: a malformed path, query or
 * header is a validation problem, and every problem an endpoint fails with
 * carries the request id before HttpApi renders it (Problems.ts).
 */
const layerRequestValidation = Layer.succeed(
  RequestValidation,
  (httpEffect) =>
    withRequestIdInProblems(
      Effect.catch(httpEffect, (error): Effect.Effect<never, Types.unhandled | ValidationFailed> =>
        !HttpApiError.HttpApiSchemaError.is(error)
          ? Effect.fail(error)
          : error.kind === "Body" || error.kind === "ResponseHeaders"
          ? Effect.die(error)
          // Paths name the parameter or header itself: `id`, `limit`, `idempotency-key`.
          : Effect.fail(validationFailed(toFieldErrors(error.cause.issue))))
    )
)

export const ApiRoutes = HttpApiBuilder.layer(Api, { openapiPath: "/openapi.json" }).pipe(
  Layer.provide([RecordsHandlers, ChangesHandlers, StreamsHandlers, AdminHandlers, HealthHandlers]),
  // The routes resolve the middleware when they are built, hence provideMerge.
  Layer.provideMerge(Layer.mergeAll(layerRequestValidation, layerAuthentication))
)

export const AppRoutes = Layer.mergeAll(
  ApiRoutes,
  HttpApiScalar.layer(Api, { path: "/docs" }),
  PrometheusMetrics.layerHttp({ path: "/metrics" }),
  // Metrics and the access log outside the request id, so they see the final
  // status, including the problems rendered for unknown routes and defects.
  HttpRouter.middleware(
    Effect.gen(function*() {
      const admission = yield* Admission
      const bookkeeping = yield* RequestBookkeeping
      // Innermost first: admission (shed, deadline), the problems for unknown
      // routes and defects, the request id, the bookkeeping (metrics, access
      // line), and outermost the caller's trace context.
      return (app) =>
        app.pipe(
          admission.guard,
          withProblemFallback,
          withRequestId,
          bookkeeping.measure,
          withTraceContext
        )
    }),
    { global: true }
  )
)

/** The relay publishes the texts the record cache holds in process (HeldRecords says why). */
const HeldRecordsFromCache = Layer.effect(
  HeldRecords,
  Effect.map(RecordCache, (cache) => HeldRecords.of({ textOf: cache.peekUnsafe }))
)

/** A candidate schema is checked against the stream's latest stored records. */
const StreamSamplesFromRecords = Layer.effect(
  StreamSamples,
  Effect.map(RecordStore, (store) =>
    StreamSamples.of({
      recent: (tenant, stream, limit) => store.list({ tenant, stream, order: "desc", limit })
    }))
)

/** The stores on PostgreSQL (or PGlite), sharing one resilience policy: need PgClient and AppConfig. */
export const layerStorage = Layer.mergeAll(
  OutboxStore.layerPg.pipe(Layer.provideMerge(RecordStore.layerPg), Layer.provide(RecordPartitions.layerPg)),
  ChangeLog.layerPg,
  SharedSecrets.layerPg,
  Database.layerPg,
  IdempotencyStore.layerPg,
  ApiKeys.layerPg,
  SchemaRegistry.layerPg,
  StreamIndexes.layerPg,
  ReadReplicas.layerPg
).pipe(
  Layer.provide(DbPolicy.layer)
)

/** The stores in memory, for tests. */
export const layerStorageMemory = Layer.mergeAll(
  // One set of tables under both, as PostgreSQL's under their layerPg.
  Layer.mergeAll(RecordStore.layerMemory, OutboxStore.layerMemory, ChangeLog.layerMemory).pipe(
    Layer.provide(MemoryTables.layer)
  ),
  SharedSecrets.layerMemory,
  Database.layerMemory,
  IdempotencyStore.layerMemory,
  ApiKeys.layerMemory,
  SchemaRegistry.layerMemory,
  StreamIndexes.layerMemory,
  ReadReplicas.layerNone
)

export type Storage =
  | RecordStore
  | OutboxStore
  | ChangeLog
  | SharedSecrets
  | Database
  | IdempotencyStore
  | ApiKeys
  | SchemaRegistry
  | StreamIndexes
  | ReadReplicas

/** What a composition of the services runs on; the cache and the bus default to in-memory and discarding ones. */
export interface ServiceOptions<
  S extends Layer.Layer<Storage, unknown, unknown>,
  C extends Layer.Layer<CacheStore, unknown, unknown>,
  B extends Layer.Layer<EventBus, unknown, unknown>
> {
  readonly storage: S
  readonly cache?: C | undefined
  readonly bus?: B | undefined
}

/**
 * The services the routes use (the hot routes too), and the background
 * maintenance, around the stores, the cache and the bus (real or in memory).
 */
export const withServices = <
  S extends Layer.Layer<Storage, unknown, unknown>,
  C extends Layer.Layer<CacheStore, unknown, unknown> = Layer.Layer<CacheStore>,
  B extends Layer.Layer<EventBus, unknown, unknown> = Layer.Layer<EventBus>
>(options: ServiceOptions<S, C, B>) =>
  Layer.mergeAll(
    HotRoutes.layer,
    Records.layer,
    BulkIngest.layer,
    RecordExport.layer,
    ChangeFeed.layer,
    layerOutboxRelay.pipe(Layer.provide(HeldRecordsFromCache))
  ).pipe(Layer.provideMerge(Layer.mergeAll(
    RecordWriter.layer,
    RecordCache.layer,
    layerMaintenance,
    layerRuntimeMetrics,
    RequestBookkeeping.layer,
    Lifecycle.layer,
    Cursors.layer,
    Positions.layer,
    RateLimits.layer,
    VerifiedKeys.layer,
    Admission.layer,
    StreamSchemas.layer.pipe(Layer.provide([SchemaCompiler.layer, StreamSamplesFromRecords]))
  ))).pipe(
    Layer.provideMerge(Layer.mergeAll(
      options.storage as Layer.Layer<Storage, Layer.Error<S>, Layer.Services<S>>,
      (options.cache ?? CacheStore.layerMemory()) as Layer.Layer<CacheStore, Layer.Error<C>, Layer.Services<C>>,
      (options.bus ?? EventBus.layerDiscard) as Layer.Layer<EventBus, Layer.Error<B>, Layer.Services<B>>
    ))
  )

/**
 * The served app: `AppRoutes` on the Node server (HOST, PORT, the limits of
 * NodeServer.ts), the hot routes in front. `fastPath` wraps the hot routes
 * (a test counts what they answer).
 */
export const layerServer = (options: {
  readonly fastPath?: (hot: FastPath) => FastPath
  readonly disableListenLog?: boolean
} = {}) =>
  Layer.unwrap(Effect.gen(function*() {
    const config = yield* HttpConfig
    const hot = yield* HotRoutes
    const fastPath = options.fastPath?.(hot) ?? hot
    // The access log is ours (ACCESS_LOG, in the JSON format), not the platform's.
    return HttpRouter.serve(AppRoutes, { disableLogger: true, disableListenLog: options.disableListenLog ?? false })
      .pipe(
        Layer.provideMerge(NodeHttpServer.layer(() => makeNodeServer(config, fastPath), {
          port: config.port,
          host: config.host,
          // in-flight requests get this long to finish once the server stops accepting
          gracefulShutdownTimeout: config.shutdownTimeout
        }))
      )
  }))
