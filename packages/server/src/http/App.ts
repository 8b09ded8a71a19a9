/**
 * The HTTP application: the contract's routes with their handlers, the OpenAPI
 * document and its reading page, wrapped in the request-id middleware. It needs
 * the services (Db, AppConfig); tests provide in-memory ones, main the real ones.
 */
import { Api, RequestValidation } from "@strata/domain"
import { Effect, Layer } from "effect"
import { HttpApiBuilder, HttpApiMiddleware, HttpApiScalar } from "effect/http-api"
import type { Db } from "../db/Db.ts"
import { PartitionMaintenanceLive } from "../db/PartitionMaintenance.ts"
import { RecordWriter } from "../records/RecordWriter.ts"
import { HealthHandlers } from "./HealthHandlers.ts"
import { RecordsHandlers } from "./RecordsHandlers.ts"
import { RequestIdMiddleware } from "./RequestId.ts"
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
  Layer.provide([RecordsHandlers, HealthHandlers]),
  // The routes resolve the middleware when they are built, hence provideMerge.
  Layer.provideMerge(RequestValidationLive)
)

export const AppRoutes = Layer.mergeAll(
  ApiRoutes,
  HttpApiScalar.layer(Api, { path: "/docs" }),
  RequestIdMiddleware
)

/** The services the routes use, and the partition maintenance, around a Db layer (real or in memory). */
export const withServices = <E, R>(db: Layer.Layer<Db, E, R>) =>
  Layer.mergeAll(RecordWriter.layer, PartitionMaintenanceLive).pipe(Layer.provideMerge(db))
