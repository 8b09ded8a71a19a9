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
import { ApiKeys } from "../auth/ApiKeys.ts"
import { AuthenticationLive } from "../auth/Authentication.ts"
import { RateLimiter } from "../auth/RateLimiter.ts"
import { VerifiedKeys } from "../auth/VerifiedKeys.ts"
import { Cache } from "../cache/Cache.ts"
import { RecordCache } from "../cache/RecordCache.ts"
import { AppConfig } from "../config/AppConfig.ts"
import { Db } from "../db/Db.ts"
import { DbPolicy } from "../db/DbPolicy.ts"
import { IdempotencyStore } from "../db/IdempotencyStore.ts"
import { MaintenanceLive } from "../db/Maintenance.ts"
import { EventBus } from "../events/EventBus.ts"
import { OutboxRelayLive } from "../events/OutboxRelay.ts"
import { logAccess } from "../observability/AccessLog.ts"
import { withHttpMetrics } from "../observability/HttpMetrics.ts"
import { RuntimeMetricsLive } from "../observability/RuntimeMetrics.ts"
import { withTraceContext } from "../observability/Tracing.ts"
import { Cursors } from "../records/Cursor.ts"
import { RecordWriter } from "../records/RecordWriter.ts"
import { SchemaCompiler } from "../schemas/SchemaCompiler.ts"
import { SchemaRegistry } from "../schemas/SchemaRegistry.ts"
import { StreamSchemas } from "../schemas/StreamSchemas.ts"
import { AdminHandlers } from "./AdminHandlers.ts"
import { Admission } from "./Admission.ts"
import { HealthHandlers, Lifecycle } from "./HealthHandlers.ts"
import { HotRoutes } from "./HotRoutes.ts"
import { RecordsHandlers } from "./RecordsHandlers.ts"
import { withRequestId } from "./RequestId.ts"
import { StreamsHandlers } from "./StreamsHandlers.ts"
import { toFieldErrors, validationFailed } from "./Validation.ts"

const RequestValidationLive = HttpApiMiddleware.layerSchemaErrorTransform(
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
  Layer.provideMerge(Layer.mergeAll(RequestValidationLive, AuthenticationLive))
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
      return (app) => withTraceContext(withHttpMetrics(withRequestId(admission.guard(app)), report))
    }),
    { global: true }
  )
)

/** The stores on PostgreSQL (or PGlite), sharing one resilience policy: need PgClient and AppConfig. */
export const StorageLive = Layer.mergeAll(
  Db.layerPg,
  IdempotencyStore.layerPg,
  ApiKeys.layerPg,
  SchemaRegistry.layerPg
).pipe(
  Layer.provide(DbPolicy.layer)
)

/** The stores in memory, for tests. */
export const StorageMemory = Layer.mergeAll(
  Db.layerMemory,
  IdempotencyStore.layerMemory,
  ApiKeys.layerMemory,
  SchemaRegistry.layerMemory
)

export type Storage = Db | IdempotencyStore | ApiKeys | SchemaRegistry

/**
 * The services the routes use (the hot routes too), and the background
 * maintenance, around the stores and the cache (real or in memory).
 */
export const withServices = <E, R, E2 = never, R2 = never, E3 = never, R3 = never>(
  storage: Layer.Layer<Storage, E, R>,
  cache: Layer.Layer<Cache, E2, R2> = Cache.layerMemory() as Layer.Layer<Cache, E2, R2>,
  bus: Layer.Layer<EventBus, E3, R3> = EventBus.layerDiscard as Layer.Layer<EventBus, E3, R3>
) =>
  HotRoutes.layer.pipe(Layer.provideMerge(Layer.mergeAll(
    RecordWriter.layer,
    RecordCache.layer,
    MaintenanceLive,
    OutboxRelayLive,
    RuntimeMetricsLive,
    Lifecycle.layer,
    Cursors.layer,
    RateLimiter.layer,
    VerifiedKeys.layer,
    Admission.layer,
    StreamSchemas.layer.pipe(Layer.provide(SchemaCompiler.layer))
  ))).pipe(
    Layer.provideMerge(Layer.mergeAll(storage, cache, bus))
  )
