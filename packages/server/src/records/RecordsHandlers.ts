/**
 * The `/data` routes over HTTP: bodies read by hand (`handleRaw`) so that every
 * bad input gets its own problem (415, 413, invalid-json, validation), each
 * write at most once per Idempotency-Key, and the record headers (ETag, 304).
 * What the routes do is Records' (and BulkHandler's, RecordExport's for NDJSON).
 */
import { Api, NotFound, Principal, type ValidationFailed } from "@strata/domain"
import { Effect, Option } from "effect"
import type { HttpServerRequest } from "effect/http"
import { HttpApiBuilder } from "effect/http-api"
import { idempotently } from "../idempotency/Idempotency.ts"
import { IdempotencyStore } from "../idempotency/IdempotencyStore.ts"
import { HttpConfig } from "../platform/config/HttpConfig.ts"
import { toResponse } from "../platform/http/Answer.ts"
import { readJsonBody } from "../platform/http/JsonBody.ts"
import { unavailableOnTransient } from "../platform/http/Problems.ts"
import { streamResponse, textResponse } from "../platform/http/ResponseCoding.ts"
import { currentTraceparent } from "../platform/observability/Tracing.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import { makeBulkHandler } from "./BulkHandler.ts"
import { queryFilters } from "./FilterQuery.ts"
import { Positions } from "./Positions.ts"
import { recordAnswer } from "./RecordAnswers.ts"
import { RecordExport, wantsNdjson } from "./RecordExport.ts"
import { Records } from "./Records.ts"

const JSON_TYPE = "application/json"
const NDJSON_TYPE = "application/x-ndjson"

export const RecordsHandlers = HttpApiBuilder.group(
  Api,
  "records",
  Effect.fn(function*(handlers) {
    const records = yield* Records
    const idempotency = yield* IdempotencyStore
    const config = yield* HttpConfig
    const positions = yield* Positions
    const bulkWrite = yield* makeBulkHandler
    const exports = yield* RecordExport
    /**
     * Read your writes (README: Read replicas): what a read that sends a position
     * needs of a replica. On the primary every write it names is visible already.
     */
    const needOf = (tenant: string, position: string | undefined) =>
      position === undefined ? Effect.succeed(undefined) : positions.needOf(tenant, position, "strata-position")

    /** Both POSTs: the body read with its limits, then stored at most once per Idempotency-Key. */
    const post = <A extends { readonly text: string; readonly location?: string; readonly position: string }>(
      request: HttpServerRequest.HttpServerRequest,
      idempotencyKey: string | undefined,
      store: (tenant: string, body: unknown, traceparent: string | null) => Effect.Effect<A, DbError | ValidationFailed>
    ) =>
      Effect.gen(function*() {
        const body = yield* readJsonBody(request, config.maxBodyBytes)
        const tenant = (yield* Principal).tenant
        return yield* idempotently(
          idempotency,
          tenant,
          request,
          idempotencyKey,
          store(tenant, body, yield* currentTraceparent)
        )
      }).pipe(Effect.catchTag("DbError", unavailableOnTransient))

    return handlers
      .handleRaw(
        "bulk",
        ({ headers, query, request }) => bulkWrite(request, query.mode ?? "atomic", headers["idempotency-key"])
      )
      .handleRaw("create", ({ headers, request }) => post(request, headers["idempotency-key"], records.create))
      .handleRaw(
        "createBatch",
        ({ headers, request }) => post(request, headers["idempotency-key"], records.createBatch)
      )
      .handle("get", ({ params, headers }) =>
        Effect.gen(function*() {
          const id = params.id.toLowerCase()
          const tenant = (yield* Principal).tenant
          // Checked, but nothing to wait for: a record a replica lacks is read on the primary.
          yield* needOf(tenant, headers["strata-position"])
          const { answer, cache } = yield* records.find(tenant, id)
          if (Option.isNone(answer)) return yield* new NotFound({ detail: `No record ${params.id}` })
          return toResponse(recordAnswer(id, answer.value, cache, headers["if-none-match"]))
        }).pipe(Effect.catchTag("DbError", unavailableOnTransient)))
      .handle("list", ({ query, request }) =>
        Effect.gen(function*() {
          const tenant = (yield* Principal).tenant
          const need = yield* needOf(tenant, request.headers["strata-position"])
          const acceptEncoding = request.headers["accept-encoding"]
          const filters = yield* queryFilters(request.url)
          if (wantsNdjson(request.headers.accept)) {
            yield* records.checkFilters(tenant, query.stream, filters)
            const { body, position } = yield* exports.export(tenant, query, filters, need)
            return streamResponse(body, {
              contentType: NDJSON_TYPE,
              headers: { "strata-position": position },
              acceptEncoding
            })
          }
          const page = yield* records.list(tenant, query, filters, need)
          return textResponse(page.text, {
            contentType: JSON_TYPE,
            headers: { "strata-position": page.position },
            acceptEncoding
          })
        }).pipe(Effect.catchTag("DbError", unavailableOnTransient)))
  })
)
