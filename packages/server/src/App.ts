/**
 * The HTTP application and the services behind it. `AppRoutes`: the contract's
 * routes with their handlers, the OpenAPI document, its reading page and
 * `/metrics`, wrapped in admission control, request ids, the access log,
 * request metrics and the caller's trace context.
 * `withServices` assembles the services around stores, a cache and an event bus:
 * main passes the real ones, tests in-memory ones or any mix.
 */
import { Api, RequestValidation } from "@strata/domain"
import { Effect, Layer } from "effect"
import { HttpRouter } from "effect/http"
import { HttpApiBuilder, HttpApiMiddleware, HttpApiScalar } from "effect/http-api"
import { PrometheusMetrics } from "effect/observability"
import { AdminHandlers } from "./admin/AdminHandlers.ts"
import { ApiKeys } from "./auth/ApiKeys.ts"
import { layerAuthentication } from "./auth/Authentication.ts"
import { RateLimits } from "./auth/RateLimits.ts"
import { VerifiedKeys } from "./auth/VerifiedKeys.ts"
import { EventBus } from "./events/EventBus.ts"
import { HeldRecords } from "./events/HeldRecords.ts"
import { layerOutboxRelay } from "./events/OutboxRelay.ts"
import { OutboxStore } from "./events/OutboxStore.ts"
import { HealthHandlers, Lifecycle } from "./health/HealthHandlers.ts"
import { IdempotencyStore } from "./idempotency/IdempotencyStore.ts"
import { layerMaintenance } from "./maintenance/Maintenance.ts"
import { CacheStore } from "./platform/cache/CacheStore.ts"
import { AppConfig } from "./platform/config/AppConfig.ts"
import { Admission } from "./platform/http/Admission.ts"
import { withProblemFallback } from "./platform/http/ProblemFallback.ts"
import { withRequestId } from "./platform/http/RequestId.ts"
import { toFieldErrors, validationFailed } from "./platform/http/Validation.ts"
import { logAccess } from "./platform/observability/AccessLog.ts"
import { layerHttpMetrics, withHttpMetrics } from "./platform/observability/HttpMetrics.ts"
import { layerRuntimeMetrics } from "./platform/observability/RuntimeMetrics.ts"
import { withTraceContext } from "./platform/observability/Tracing.ts"
import { Database } from "./platform/sql/Database.ts"
import { DbPolicy } from "./platform/sql/DbPolicy.ts"
import { SharedSecrets } from "./platform/sql/SharedSecrets.ts"
import { Cursors } from "./records/Cursor.ts"
import { HotRoutes } from "./records/HotRoutes.ts"
import { MemoryTables } from "./records/MemoryTables.ts"
import { RecordCache } from "./records/RecordCache.ts"
import { RecordPartitions } from "./records/RecordPartitions.ts"
import { Records } from "./records/Records.ts"
import { RecordsHandlers } from "./records/RecordsHandlers.ts"
import { RecordStore } from "./records/RecordStore.ts"
import { RecordWriter } from "./records/RecordWriter.ts"
import { SchemaCompiler } from "./schemas/SchemaCompiler.ts"
import { SchemaRegistry } from "./schemas/SchemaRegistry.ts"
import { StreamSamples } from "./schemas/StreamSamples.ts"
import { StreamSchemas } from "./schemas/StreamSchemas.ts"
import { StreamsHandlers } from "./schemas/StreamsHandlers.ts"

const layerRequestValidation = HttpApiMiddleware.layerSchemaErrorTransform(
  RequestValidation,
  (error) =>
    error.kind === "Body" || error.kind === "ResponseHeaders"
      ? Effect.die(error)
      // Paths name the parameter or header itself: `id`, `limit`, `idempotency-key`.
      : Effect.fail(validationFailed(toFieldErrors(error.cause.issue)))
)

export const ApiRoutes = HttpApiBuilder.layer(Api, { openapiPath: "/openapi.json" }).pipe(
  Layer.provide([RecordsHandlers, StreamsHandlers, AdminHandlers, HealthHandlers]),
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
      const config = yield* AppConfig
      const admission = yield* Admission
      const report = config.accessLog ? logAccess : undefined
      // Innermost first: admission (shed, deadline), the problems for unknown
      // routes and defects, the request id, metrics and the access log, and
      // outermost the caller's trace context.
      return (app) =>
        app.pipe(
          admission.guard,
          withProblemFallback,
          withRequestId,
          (withId) => withHttpMetrics(withId, report),
          withTraceContext
        )
    }),
    { global: true }
  )
)

/** The relay publishes the texts the record cache holds in process (HeldRecords says why). */
const HeldRecordsFromCache = Layer.effect(
  HeldRecords,
  Effect.map(RecordCache, (cache) => HeldRecords.of({ textOf: cache.peek }))
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
  SharedSecrets.layerPg,
  Database.layerPg,
  IdempotencyStore.layerPg,
  ApiKeys.layerPg,
  SchemaRegistry.layerPg
).pipe(
  Layer.provide(DbPolicy.layer)
)

/** The stores in memory, for tests. */
export const layerStorageMemory = Layer.mergeAll(
  // One set of tables under both, as PostgreSQL's under their layerPg.
  Layer.mergeAll(RecordStore.layerMemory, OutboxStore.layerMemory).pipe(Layer.provide(MemoryTables.layer)),
  SharedSecrets.layerMemory,
  Database.layerMemory,
  IdempotencyStore.layerMemory,
  ApiKeys.layerMemory,
  SchemaRegistry.layerMemory
)

export type Storage = RecordStore | OutboxStore | SharedSecrets | Database | IdempotencyStore | ApiKeys | SchemaRegistry

/** What a composition of the services runs on; the cache and the bus default to in-memory and discarding ones. */
export interface ServiceOptions<E, R, E2, R2, E3, R3> {
  readonly storage: Layer.Layer<Storage, E, R>
  readonly cache?: Layer.Layer<CacheStore, E2, R2> | undefined
  readonly bus?: Layer.Layer<EventBus, E3, R3> | undefined
}

/**
 * The services the routes use (the hot routes too), and the background
 * maintenance, around the stores, the cache and the bus (real or in memory).
 */
export const withServices = <E, R, E2 = never, R2 = never, E3 = never, R3 = never>(
  options: ServiceOptions<E, R, E2, R2, E3, R3>
) =>
  Layer.mergeAll(
    HotRoutes.layer,
    Records.layer,
    layerOutboxRelay.pipe(Layer.provide(HeldRecordsFromCache))
  ).pipe(Layer.provideMerge(Layer.mergeAll(
    RecordWriter.layer,
    RecordCache.layer,
    layerMaintenance,
    layerRuntimeMetrics,
    layerHttpMetrics,
    Lifecycle.layer,
    Cursors.layer,
    RateLimits.layer,
    VerifiedKeys.layer,
    Admission.layer,
    StreamSchemas.layer.pipe(Layer.provide([SchemaCompiler.layer, StreamSamplesFromRecords]))
  ))).pipe(
    Layer.provideMerge(Layer.mergeAll(
      options.storage,
      options.cache ?? CacheStore.layerMemory(),
      options.bus ?? EventBus.layerDiscard
    ))
  )
