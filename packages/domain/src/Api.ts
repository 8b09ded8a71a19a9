/**
 * The whole HTTP contract (README: The API). The server implements it, the client is
 * derived from it and the OpenAPI document is generated from it.
 */
import { Schema, SchemaTransformation } from "effect"
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiMiddleware, HttpApiSchema, OpenApi } from "effect/http-api"
import { ApiKeyList, ApiKeyView, CreatedKey, NewKey, NewTenant, Tenant, TenantList } from "./Admin.ts"
import { Authentication, RequiredScope } from "./Auth.ts"
import { BulkQuery, BulkResult } from "./Bulk.ts"
import { ChangePage, ChangesHeaders, ChangesQuery, PositionText, StreamChangesQuery } from "./Changes.ts"
import {
  BodyProblems,
  CommonProblems,
  Conflict,
  IdempotencyKeyInFlight,
  IdempotencyKeyReused,
  InvalidSchema,
  NotFound,
  PositionExpired,
  RateLimited,
  SchemaIncompatible,
  ValidationFailed
} from "./Problems.ts"
import {
  BatchRequest,
  IsoDateTime,
  NewRecord,
  RecordId,
  RecordKey,
  RecordList,
  RecordPage,
  StoredRecord,
  StreamName
} from "./Record.ts"
import {
  CheckSchema,
  DeclareIndexes,
  RegisterSchema,
  SchemaCheck,
  StreamIndexList,
  StreamList,
  StreamSchema,
  StreamSchemaVersions
} from "./Streams.ts"

const IdempotencyHeaders = Schema.Struct({
  "idempotency-key": Schema.optionalKey(Schema.String.annotate({
    description: "1–255 visible ASCII characters; replays the first answer for 24 h (IDEMPOTENCY_TTL)."
  }))
})

/** Read your writes (README: Change feed): a read that sends a write's position sees that write. */
const ReadPosition = Schema.optionalKey(PositionText.annotate({
  description:
    "Read your writes: a position (a write's Strata-Position); the answer includes everything up to it. Another tenant's or a malformed one is a 400."
}))

const ConditionalHeaders = Schema.Struct({
  "if-none-match": Schema.optionalKey(Schema.String),
  "strata-position": ReadPosition
})

const WriteProblems = [...BodyProblems, RateLimited, IdempotencyKeyReused, IdempotencyKeyInFlight, ...CommonProblems]

/** A date-time query parameter: ISO 8601 with a zone, as a Date. */
const DateTimeParam = Schema.String.annotate({
  description: "An ISO 8601 date-time with a zone, e.g. 2026-11-24T10:00:00Z."
}).pipe(Schema.decodeTo(IsoDateTime), Schema.decodeTo(Schema.Date, SchemaTransformation.dateFromString))

// Descriptions sit on the query string's side of each parameter: the side OpenAPI documents.
/** How many records a page holds: a whole number from 1 to 1000 in the query string. */
export const PageLimit = Schema.String.check(
  Schema.isPattern(/^(?:[1-9]\d{0,2}|1000)$/, { message: "must be a whole number from 1 to 1000" }),
  Schema.isMaxLength(4)
).annotate({ description: "How many records a page holds: a whole number from 1 to 1000; 100 when absent." }).pipe(
  Schema.decodeTo(
    Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1000 })),
    SchemaTransformation.numberFromString
  )
)

/**
 * Filters on data (README: Filters): `data.<path>` parameters, each `<op>.<value>`, repeated
 * for several on one path. Declared so that clients can send them; the server parses and
 * checks them from the URL itself (their names are the paths), naming each bad one.
 */
export const DataFilters = Schema.Record(
  Schema.TemplateLiteral(["data.", Schema.String]),
  Schema.Union([Schema.String, Schema.Array(Schema.String)])
).annotate({ description: "Filters on data: data.<path>=<op>.<value>, ANDed (see the route's description)." })

/** `GET /data`'s query: every bad parameter is named in one problem (QueryParseOptions errors: all). */
export const ListQuery = Schema.StructWithRest(
  Schema.Struct({
    stream: StreamName,
    key: Schema.optionalKey(RecordKey),
    // from: the inclusive, to: the exclusive bound of occurredAt; to must not be before from.
    from: Schema.optionalKey(DateTimeParam),
    to: Schema.optionalKey(DateTimeParam),
    order: Schema.optionalKey(Schema.Literals(["asc", "desc"]).annotate({ description: "desc when absent." })),
    limit: Schema.optionalKey(PageLimit),
    cursor: Schema.optionalKey(
      Schema.String.check(Schema.isMaxLength(512, { message: "is not a cursor we issued" })).annotate({
        description: "The nextCursor of the previous page, with the same stream, key and order."
      })
    )
  }),
  [DataFilters]
)
export type ListQuery = typeof ListQuery.Type

export class RecordsGroup extends HttpApiGroup.make("records")
  .add(
    HttpApiEndpoint.post("create", "/data", {
      headers: IdempotencyHeaders,
      payload: NewRecord,
      success: StoredRecord.pipe(HttpApiSchema.status(201)),
      error: WriteProblems
    }).annotate(
      OpenApi.Description,
      "Stores one record. The 201 is sent only once the record and its event are committed; its Strata-Position header is the write's position in the change feed. Scope: records:write."
    ).annotate(RequiredScope, "records:write"),
    HttpApiEndpoint.post("createBatch", "/data/batch", {
      headers: IdempotencyHeaders,
      payload: BatchRequest,
      success: RecordList.pipe(HttpApiSchema.status(201)),
      error: WriteProblems
    }).annotate(
      OpenApi.Description,
      "Stores 1 to MAX_BATCH records atomically: all or none. Strata-Position: the position of the batch's last record in the change feed. Scope: records:write."
    )
      .annotate(RequiredScope, "records:write"),
    HttpApiEndpoint.post("bulk", "/data/bulk", {
      query: BulkQuery,
      headers: IdempotencyHeaders,
      payload: HttpApiSchema.StreamNdjson({
        schema: NewRecord,
        contentType: ["application/x-ndjson", "application/jsonl"]
      }),
      success: BulkResult,
      error: WriteProblems
    }).annotate(
      OpenApi.Description,
      "Stores NDJSON: one record envelope { stream, key?, occurredAt?, data } a line (a BOM, CRLF, blank lines and a missing final newline are fine), parsed as it arrives, gzip/deflate/br/zstd accepted. mode=atomic (default): any bad line is a 400 validation problem whose errors[] name each bad line (line, path, message), and nothing is stored. mode=partial: the good lines are stored, the bad ones listed. The 200 comes after every accepted record is committed; Strata-Position is the last write's. Over MAX_BULK_BYTES (decompressed) or MAX_BULK_RECORDS: 413. Scope: records:write."
    ).annotate(RequiredScope, "records:write"),
    HttpApiEndpoint.get("get", "/data/:id", {
      params: { id: RecordId },
      headers: ConditionalHeaders,
      success: StoredRecord,
      error: [NotFound, ValidationFailed, PositionExpired, RateLimited, ...CommonProblems]
    }).annotate(
      OpenApi.Description,
      "One record by id. Records never change: the ETag is strong and If-None-Match gives 304. Scope: records:read."
    ).annotate(RequiredScope, "records:read"),
    HttpApiEndpoint.get("list", "/data", {
      query: ListQuery,
      success: RecordPage,
      error: [ValidationFailed, PositionExpired, RateLimited, ...CommonProblems]
    }).annotate(HttpApi.QueryParseOptions, { errors: "all" }).annotate(
      OpenApi.Description,
      "A stream's records over the half-open range [from, to) of occurredAt, keyset-paginated on (occurredAt, id). The Strata-Position header of the answer is the change feed's head when the page was read: tail GET /changes from there to miss nothing that came after the page. A Strata-Position request header (read your writes) is checked as on GET /data/{id}. Filters on data: any number of parameters data.<path>=<op>.<value> (ANDed, at most 20; path: names separated by dots, up to 32 deep, a name holding a dot written as a JSON string), op one of eq, neq, gt, gte, lt, lte (a JSON number compares numerically and exactly, a quoted JSON string or bare text as a string), in.(a,b,…) (at most 100), is.null, exists, contains.<URL-encoded JSON> (jsonb containment). A filtered page reads at most FILTER_SCAN_BUDGET rows, says how many in scanned, and may be short or empty with a nextCursor; its cursor is bound to the filter set. A bad filter is a 400 naming the parameter. Scope: records:read."
    ).annotate(RequiredScope, "records:read")
  )
  .middleware(Authentication)
  .annotate(OpenApi.Title, "Records")
{}

const FeedProblems = [ValidationFailed, PositionExpired, RateLimited, ...CommonProblems]
const FEED =
  "With Accept: text/event-stream the same URL streams forever as Server-Sent Events: `event: record` with `id:` the change's position and `data:` the change, `event: heartbeat` every FEED_HEARTBEAT with `id:` the current position, `retry:` before a planned close; resume with Last-Event-ID. Feed streams have their own caps (FEED_MAX_STREAMS, FEED_MAX_STREAMS_PER_KEY: 429 above them) and do not count against MAX_IN_FLIGHT or REQUEST_TIMEOUT. A position older than FEED_RETENTION, or of another database epoch, is a 410 naming earliestPosition; a malformed one or another tenant's, a 400. Scope: records:read."

const FEED_FILTERS =
  "Filters on data as on GET /data (data.<path>=<op>.<value>, ANDed): a page reads limit changes and answers those whose record passes, so it may be short or empty; nextPosition moves past every change read."

export class ChangesGroup extends HttpApiGroup.make("changes")
  .add(
    HttpApiEndpoint.get("tenant", "/changes", {
      query: ChangesQuery,
      headers: ChangesHeaders,
      success: ChangePage,
      error: FeedProblems
    }).annotate(HttpApi.QueryParseOptions, { errors: "all" }).annotate(
      OpenApi.Description,
      `Every record of the tenant (or of the streams named) in commit order, each with its position, after \`after\`. ${FEED} ${FEED_FILTERS}`
    ).annotate(RequiredScope, "records:read"),
    HttpApiEndpoint.get("stream", "/streams/:stream/changes", {
      params: { stream: StreamName },
      query: StreamChangesQuery,
      headers: ChangesHeaders,
      success: ChangePage,
      error: FeedProblems
    }).annotate(HttpApi.QueryParseOptions, { errors: "all" }).annotate(
      OpenApi.Description,
      `The stream's records in commit order, each with its position, after \`after\`. ${FEED} ${FEED_FILTERS}`
    ).annotate(RequiredScope, "records:read")
  )
  .middleware(Authentication)
  .annotate(OpenApi.Title, "Change feed")
{}

const StreamParams = { stream: StreamName }
const ReadProblems = [NotFound, ValidationFailed, RateLimited, ...CommonProblems]

export class StreamsGroup extends HttpApiGroup.make("streams")
  .add(
    HttpApiEndpoint.put("register", "/streams/:stream/schema", {
      params: StreamParams,
      payload: RegisterSchema,
      success: [StreamSchema.pipe(HttpApiSchema.status(201)), StreamSchema],
      error: [...BodyProblems, InvalidSchema, SchemaIncompatible, RateLimited, ...CommonProblems]
    }).annotate(
      OpenApi.Description,
      "Registers a new version of the stream's schema (201); the same schema as the current one is a no-op (200). With compatibility backward, a schema the stream's recent records fail is a 409. Scope: schemas:write."
    ).annotate(RequiredScope, "schemas:write"),
    HttpApiEndpoint.get("current", "/streams/:stream/schema", {
      params: StreamParams,
      success: StreamSchema,
      error: ReadProblems
    }).annotate(OpenApi.Description, "The stream's current schema. Scope: records:read.")
      .annotate(RequiredScope, "records:read"),
    HttpApiEndpoint.get("versions", "/streams/:stream/schema/versions", {
      params: StreamParams,
      success: StreamSchemaVersions,
      error: ReadProblems
    }).annotate(OpenApi.Description, "Every version of the stream's schema, oldest first. Scope: records:read.")
      .annotate(RequiredScope, "records:read"),
    HttpApiEndpoint.get("version", "/streams/:stream/schema/versions/:version", {
      params: {
        ...StreamParams,
        version: Schema.String.check(Schema.isPattern(/^[1-9]\d{0,8}$/, { message: "must be a version number" }))
      },
      success: StreamSchema,
      error: ReadProblems
    }).annotate(OpenApi.Description, "One version of the stream's schema. Scope: records:read.")
      .annotate(RequiredScope, "records:read"),
    HttpApiEndpoint.get("list", "/streams", {
      success: StreamList,
      error: [RateLimited, ...CommonProblems]
    }).annotate(
      OpenApi.Description,
      "The tenant's streams that have a schema, with their current version. Scope: records:read."
    )
      .annotate(RequiredScope, "records:read"),
    HttpApiEndpoint.post("check", "/streams/:stream/schema/check", {
      params: StreamParams,
      payload: CheckSchema,
      success: SchemaCheck,
      error: [...BodyProblems, InvalidSchema, RateLimited, ...CommonProblems]
    }).annotate(
      OpenApi.Description,
      "Validates the stream's most recent records (up to SCHEMA_CHECK_RECORDS) against a candidate schema; stores nothing. Scope: schemas:write."
    ).annotate(RequiredScope, "schemas:write"),
    HttpApiEndpoint.put("declareIndexes", "/streams/:stream/indexes", {
      params: StreamParams,
      payload: DeclareIndexes,
      success: StreamIndexList,
      error: [...BodyProblems, RateLimited, ...CommonProblems]
    }).annotate(
      OpenApi.Description,
      "Declares the paths of data the tenant filters on in this stream (the whole set: one left out is dropped). Each is built in the background, partition by partition without blocking writes (state building, then ready; built of partitions says how far), and partitions made later get it. A filter on a ready path uses it. Scope: schemas:write."
    ).annotate(RequiredScope, "schemas:write"),
    HttpApiEndpoint.get("indexes", "/streams/:stream/indexes", {
      params: StreamParams,
      success: StreamIndexList,
      error: [ValidationFailed, RateLimited, ...CommonProblems]
    }).annotate(OpenApi.Description, "The stream's declared indexes with their state. Scope: records:read.")
      .annotate(RequiredScope, "records:read")
  )
  .middleware(Authentication)
  .annotate(OpenApi.Title, "Streams and schemas")
{}

const AdminProblems = [ValidationFailed, NotFound, Conflict, RateLimited, ...CommonProblems]

export class AdminGroup extends HttpApiGroup.make("admin")
  .add(
    HttpApiEndpoint.post("createTenant", "/admin/tenants", {
      payload: NewTenant,
      success: Tenant.pipe(HttpApiSchema.status(201)),
      error: [...BodyProblems, NotFound, Conflict, RateLimited, ...CommonProblems]
    }).annotate(OpenApi.Description, "Creates a tenant. Scope: admin.").annotate(RequiredScope, "admin"),
    HttpApiEndpoint.get("listTenants", "/admin/tenants", {
      success: TenantList,
      error: AdminProblems
    }).annotate(OpenApi.Description, "Every tenant. Scope: admin.").annotate(RequiredScope, "admin"),
    HttpApiEndpoint.post("createKey", "/admin/tenants/:tenant/keys", {
      params: { tenant: Schema.String },
      payload: NewKey,
      success: CreatedKey.pipe(HttpApiSchema.status(201)),
      error: [...BodyProblems, NotFound, Conflict, RateLimited, ...CommonProblems]
    }).annotate(
      OpenApi.Description,
      "Makes an API key for the tenant; the answer holds its secret, shown only this once. Scope: admin."
    )
      .annotate(RequiredScope, "admin"),
    HttpApiEndpoint.get("listKeys", "/admin/tenants/:tenant/keys", {
      params: { tenant: Schema.String },
      success: ApiKeyList,
      error: AdminProblems
    }).annotate(OpenApi.Description, "A tenant's keys, never their secrets. Scope: admin.")
      .annotate(RequiredScope, "admin"),
    HttpApiEndpoint.post("revokeKey", "/admin/keys/:id/revoke", {
      params: { id: Schema.String },
      success: ApiKeyView,
      error: AdminProblems
    }).annotate(
      OpenApi.Description,
      "Revokes a key (again is fine); servers stop accepting it within AUTH_CACHE_TTL. Scope: admin."
    ).annotate(RequiredScope, "admin")
  )
  .middleware(Authentication)
  .annotate(OpenApi.Title, "Administration")
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
  .add(ChangesGroup)
  .add(StreamsGroup)
  .add(AdminGroup)
  .add(HealthGroup)
  .middleware(RequestValidation)
  .annotateMerge(OpenApi.annotations({
    title: "Strata",
    version: "0.1.0",
    description: "Stores JSON records durably, serves them back fast and publishes each one as an event."
  }))
{}
