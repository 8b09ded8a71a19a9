/**
 * Every error the API answers with, as RFC 9457 problem documents
 * (`application/problem+json`). Each kind has its own stable `type`.
 * `requestId` is filled in by the server for every problem it sends.
 */
import { Schema } from "effect"
import { HttpApiError } from "effect/http-api"

const requestId = { requestId: Schema.optionalKey(Schema.String) }

export const FieldError = Schema.Struct({
  path: Schema.String,
  message: Schema.String,
  /** For a value that breaks its stream's schema: the JSON Schema keyword it fails, e.g. `type`. */
  keyword: Schema.optionalKey(Schema.String),
  /** For a value that breaks its stream's schema: the version of that schema. */
  schemaVersion: Schema.optionalKey(Schema.Int),
  /** In a schema check: the stored record that fails the candidate. */
  recordId: Schema.optionalKey(Schema.String),
  /** In a bulk body (POST /data/bulk): the line, from 1. */
  line: Schema.optionalKey(Schema.Int)
}).annotate({
  identifier: "FieldError",
  description: "One invalid field, e.g. `records[3].stream`, or `data.amount` with the schema keyword it breaks."
})
export type FieldError = typeof FieldError.Type

export class InvalidJson extends HttpApiError.Problem<InvalidJson>()("InvalidJson", {
  type: "/problems/invalid-json",
  status: 400,
  title: "Body is not valid JSON"
}, requestId) {}

export class ValidationFailed extends HttpApiError.Problem<ValidationFailed>()("ValidationFailed", {
  type: "/problems/validation",
  status: 400,
  title: "Invalid request"
}, { ...requestId, errors: Schema.Array(FieldError) }) {}

export class InvalidSchema extends HttpApiError.Problem<InvalidSchema>()("InvalidSchema", {
  type: "/problems/invalid-schema",
  status: 400,
  title: "The JSON Schema cannot be accepted"
}, { ...requestId, errors: Schema.Array(FieldError) }) {}

export class SchemaIncompatible extends HttpApiError.Problem<SchemaIncompatible>()("SchemaIncompatible", {
  type: "/problems/schema-incompatible",
  status: 409,
  title: "Recent records of the stream fail the new schema"
}, { ...requestId, errors: Schema.Array(FieldError) }) {}

export class Conflict extends HttpApiError.Problem<Conflict>()("Conflict", {
  type: "/problems/conflict",
  status: 409,
  title: "It already exists"
}, requestId) {}

export class MalformedRequest extends HttpApiError.Problem<MalformedRequest>()("MalformedRequest", {
  type: "/problems/malformed-request",
  status: 400,
  title: "Malformed HTTP request"
}, requestId) {}

export class Unauthorized extends HttpApiError.Problem<Unauthorized>()("Unauthorized", {
  type: "/problems/unauthorized",
  status: 401,
  title: "Missing or unknown API key"
}, requestId) {}

export class Forbidden extends HttpApiError.Problem<Forbidden>()("Forbidden", {
  type: "/problems/forbidden",
  status: 403,
  title: "The API key lacks the scope this route needs"
}, requestId) {}

export class NotFound extends HttpApiError.Problem<NotFound>()("NotFound", {
  type: "/problems/not-found",
  status: 404,
  title: "Not found"
}, requestId) {}

export class RequestTimeout extends HttpApiError.Problem<RequestTimeout>()("RequestTimeout", {
  type: "/problems/request-timeout",
  status: 408,
  title: "The request was not received in time"
}, requestId) {}

export class MethodNotAllowed extends HttpApiError.Problem<MethodNotAllowed>()("MethodNotAllowed", {
  type: "/problems/method-not-allowed",
  status: 405,
  title: "Method not allowed on this route"
}, requestId) {}

export class IdempotencyKeyInFlight extends HttpApiError.Problem<IdempotencyKeyInFlight>()("IdempotencyKeyInFlight", {
  type: "/problems/idempotency-key-in-flight",
  status: 409,
  title: "A request with this Idempotency-Key is still running"
}, requestId) {}

export class PayloadTooLarge extends HttpApiError.Problem<PayloadTooLarge>()("PayloadTooLarge", {
  type: "/problems/payload-too-large",
  status: 413,
  title: "Body too large"
}, requestId) {}

export class UnsupportedMediaType extends HttpApiError.Problem<UnsupportedMediaType>()("UnsupportedMediaType", {
  type: "/problems/unsupported-media-type",
  status: 415,
  title: "Body must be application/json"
}, requestId) {}

export class IdempotencyKeyReused extends HttpApiError.Problem<IdempotencyKeyReused>()("IdempotencyKeyReused", {
  type: "/problems/idempotency-key-reused",
  status: 422,
  title: "This Idempotency-Key was used with a different body"
}, requestId) {}

export class HeadersTooLarge extends HttpApiError.Problem<HeadersTooLarge>()("HeadersTooLarge", {
  type: "/problems/headers-too-large",
  status: 431,
  title: "Request line and headers too large"
}, requestId) {}

export class RateLimited extends HttpApiError.Problem<RateLimited>()("RateLimited", {
  type: "/problems/rate-limited",
  status: 429,
  title: "Rate limit exceeded"
}, requestId) {}

export class PositionExpired extends HttpApiError.Problem<PositionExpired>()("PositionExpired", {
  type: "/problems/position-expired",
  status: 410,
  title: "The position is older than what the change feed keeps"
}, {
  ...requestId,
  /** Where a reader that was cut off may go on: the oldest position the feed still serves. */
  earliestPosition: Schema.String
}) {}

export class InternalError extends HttpApiError.Problem<InternalError>()("InternalError", {
  type: "/problems/internal",
  status: 500,
  title: "Internal error"
}, requestId) {}

export class Unavailable extends HttpApiError.Problem<Unavailable>()("Unavailable", {
  type: "/problems/unavailable",
  status: 503,
  title: "Service unavailable"
}, requestId) {}

/**
 * Problems any route may answer with. The first three come from the HTTP
 * server itself, before routing, for requests it cannot read.
 */
export const CommonProblems = [
  MalformedRequest,
  MethodNotAllowed,
  RequestTimeout,
  HeadersTooLarge,
  InternalError,
  Unavailable
] as const
/** Problems of a route that reads a JSON body. */
export const BodyProblems = [InvalidJson, ValidationFailed, PayloadTooLarge, UnsupportedMediaType] as const
