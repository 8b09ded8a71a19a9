/**
 * The whole HTTP contract (SPEC §2). The server implements it, the client is
 * derived from it and the OpenAPI document is generated from it.
 */
import { Schema } from "effect"
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiMiddleware, HttpApiSchema, OpenApi } from "effect/http-api"
import { Authentication, RequiredScope } from "./Auth.ts"
import {
  BodyProblems,
  CommonProblems,
  IdempotencyKeyInFlight,
  IdempotencyKeyReused,
  NotFound,
  RateLimited,
  ValidationFailed
} from "./Problems.ts"
import { BatchRequest, NewRecord, RecordId, RecordList, RecordPage, StoredRecord } from "./Record.ts"

const IdempotencyHeaders = Schema.Struct({
  "idempotency-key": Schema.optionalKey(Schema.String.annotate({
    description: "1–255 visible ASCII characters; replays the first answer for 24 h (IDEMPOTENCY_TTL)."
  }))
})

const ConditionalHeaders = Schema.Struct({
  "if-none-match": Schema.optionalKey(Schema.String)
})

const WriteProblems = [...BodyProblems, RateLimited, IdempotencyKeyReused, IdempotencyKeyInFlight, ...CommonProblems]

export const ListQuery = Schema.Struct({
  stream: Schema.String,
  key: Schema.optionalKey(Schema.String),
  from: Schema.optionalKey(Schema.String),
  to: Schema.optionalKey(Schema.String),
  order: Schema.optionalKey(Schema.Literals(["asc", "desc"])),
  limit: Schema.optionalKey(Schema.String),
  cursor: Schema.optionalKey(Schema.String)
})

export class RecordsGroup extends HttpApiGroup.make("records")
  .add(
    HttpApiEndpoint.post("create", "/data", {
      headers: IdempotencyHeaders,
      payload: NewRecord,
      success: StoredRecord.pipe(HttpApiSchema.status(201)),
      error: WriteProblems
    }).annotate(
      OpenApi.Description,
      "Stores one record. The 201 is sent only once the record and its event are committed. Scope: records:write."
    ).annotate(RequiredScope, "records:write"),
    HttpApiEndpoint.post("createBatch", "/data/batch", {
      headers: IdempotencyHeaders,
      payload: BatchRequest,
      success: RecordList.pipe(HttpApiSchema.status(201)),
      error: WriteProblems
    }).annotate(OpenApi.Description, "Stores 1 to MAX_BATCH records atomically: all or none. Scope: records:write.")
      .annotate(RequiredScope, "records:write"),
    HttpApiEndpoint.get("get", "/data/:id", {
      params: { id: RecordId },
      headers: ConditionalHeaders,
      success: StoredRecord,
      error: [NotFound, ValidationFailed, RateLimited, ...CommonProblems]
    }).annotate(
      OpenApi.Description,
      "One record by id. Records never change: the ETag is strong and If-None-Match gives 304. Scope: records:read."
    ).annotate(RequiredScope, "records:read"),
    HttpApiEndpoint.get("list", "/data", {
      query: ListQuery,
      success: RecordPage,
      error: [ValidationFailed, RateLimited, ...CommonProblems]
    }).annotate(
      OpenApi.Description,
      "A stream's records over the half-open range [from, to) of occurredAt, keyset-paginated on (occurredAt, id). Scope: records:read."
    ).annotate(RequiredScope, "records:read")
  )
  .middleware(Authentication)
  .annotate(OpenApi.Title, "Records")
{}

export const DependencyStatus = Schema.Literals(["up", "degraded", "down"])

export const Readiness = Schema.Struct({
  status: DependencyStatus,
  dependencies: Schema.Record(Schema.String, DependencyStatus)
}).annotate({ identifier: "Readiness" })
export type Readiness = typeof Readiness.Type

export class HealthGroup extends HttpApiGroup.make("health")
  .add(
    HttpApiEndpoint.get("live", "/health/live", { success: Schema.Struct({ status: Schema.Literal("up") }) }),
    HttpApiEndpoint.get("ready", "/health/ready", {
      success: Readiness,
      error: Readiness.pipe(HttpApiSchema.status(503))
    })
  )
  .annotate(OpenApi.Title, "Health")
{}

/** Turns a malformed path, query or header into a validation problem. */
export class RequestValidation extends HttpApiMiddleware.Service<RequestValidation>()("strata/RequestValidation", {
  error: ValidationFailed
}) {}

export class Api extends HttpApi.make("strata")
  .add(RecordsGroup)
  .add(HealthGroup)
  .middleware(RequestValidation)
  .annotateMerge(OpenApi.annotations({
    title: "Strata",
    version: "0.1.0",
    description: "Stores JSON records durably, serves them back fast and publishes each one as an event."
  }))
{}
