/**
 * The `/data` routes (SPEC §2). Bodies are read by hand (`handleRaw`) so that
 * every bad input gets its own problem: 415, 413, invalid-json, validation.
 */
import {
  Api,
  BatchRequest,
  IsoDateTime,
  NewRecord,
  NotFound,
  Principal,
  RecordKey,
  type StoredRecord,
  StreamName,
  Unavailable,
  type ValidationFailed
} from "@strata/domain"
import { Array as Arr, Effect, Option, Result, Schema } from "effect"
import { type HttpServerRequest, HttpServerResponse } from "effect/http"
import { HttpApiBuilder } from "effect/http-api"
import { idempotently } from "../idempotency/Idempotency.ts"
import { IdempotencyStore } from "../idempotency/IdempotencyStore.ts"
import { HttpConfig } from "../platform/config/HttpConfig.ts"
import { readJsonBody } from "../platform/http/JsonBody.ts"
import { decodeAll, validationFailed } from "../platform/http/Validation.ts"
import { recordText } from "../platform/json/ExactJson.ts"
import { currentTraceparent } from "../platform/observability/Tracing.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import { StreamSchemas } from "../schemas/StreamSchemas.ts"
import { Cursors } from "./Cursor.ts"
import { prepareRecord } from "./Prepare.ts"
import { RecordCache } from "./RecordCache.ts"
import { matchesEtag, recordHeaders } from "./RecordHeaders.ts"
import { recordIdTime } from "./RecordId.ts"
import { Db } from "./RecordStore.ts"
import { RecordWriter } from "./RecordWriter.ts"

/** A database that is down or slow is a 503 the client may retry; anything else is a bug (500). */
export const unavailableOnTransient = (error: DbError): Effect.Effect<never, Unavailable> =>
  error.transient
    ? Effect.andThen(
      Effect.logWarning("Database unavailable", error.message),
      Effect.fail(new Unavailable({ detail: "The database is unavailable; retry shortly." }))
    )
    : Effect.die(error)

const listText = (records: ReadonlyArray<StoredRecord>, nextCursor: string | null) =>
  `{"records":[${records.map(recordText).join(",")}],"nextCursor":${JSON.stringify(nextCursor)}}`

/** `GET /data` query parameters, checked here so every bad one is named in one problem. */
const ListParams = Schema.Struct({
  stream: StreamName,
  key: Schema.optionalKey(RecordKey),
  from: Schema.optionalKey(IsoDateTime),
  to: Schema.optionalKey(IsoDateTime),
  order: Schema.optionalKey(Schema.Literals(["asc", "desc"])),
  limit: Schema.optionalKey(
    Schema.String.check(
      Schema.isPattern(/^(?:[1-9]\d{0,2}|1000)$/, { message: "must be a whole number from 1 to 1000" })
    )
  ),
  cursor: Schema.optionalKey(Schema.String.check(Schema.isMaxLength(512, { message: "is not a cursor we issued" })))
})

export const RecordsHandlers = HttpApiBuilder.group(
  Api,
  "records",
  Effect.fn(function*(handlers) {
    const db = yield* Db
    const writer = yield* RecordWriter
    const idempotency = yield* IdempotencyStore
    const recordCache = yield* RecordCache
    const config = yield* HttpConfig
    const cursors = yield* Cursors
    const schemas = yield* StreamSchemas
    const decodeRecord = decodeAll(NewRecord)
    const decodeBatch = decodeAll(BatchRequest)
    const decodeList = decodeAll(ListParams)

    const storeBatch = (tenant: string, body: unknown, traceparent: string | null) =>
      Effect.gen(function*() {
        const input = yield* decodeBatch(body)
        if (input.records.length === 0 || input.records.length > config.maxBatch) {
          return yield* validationFailed([{
            path: "records",
            message: `must hold 1 to ${config.maxBatch} records (MAX_BATCH)`
          }])
        }
        const versions = yield* schemas.validate(tenant, input.records, (i) => `records[${i}].data`)
        const now = Date.now()
        const rows = input.records.map((r, i) =>
          prepareRecord(tenant, r, now, config.maxRecordBytes, traceparent, `records[${i}]`, versions[i])
        )
        const invalid = Arr.getFailures(rows)
        if (invalid.length > 0) return yield* validationFailed(invalid)
        const valid = Arr.getSuccesses(rows)
        if (!Arr.isArrayNonEmpty(valid)) return yield* Effect.die("a non-empty batch has rows")
        const stored = yield* writer.write(valid)
        const answers = stored.map((r) => ({ id: r.id, text: recordText(r) }))
        recordCache.remember(tenant, answers)
        return { text: `{"records":[${answers.map((a) => a.text).join(",")}]}` }
      })

    const storeOne = (tenant: string, body: unknown, traceparent: string | null) =>
      Effect.gen(function*() {
        const input = yield* decodeRecord(body)
        const [version] = yield* schemas.validate(tenant, [input], () => "data")
        const row = prepareRecord(tenant, input, Date.now(), config.maxRecordBytes, traceparent, "", version)
        if (Result.isFailure(row)) return yield* validationFailed([row.failure])
        const [stored] = yield* writer.write([row.success])
        const text = recordText(stored)
        recordCache.remember(tenant, [{ id: stored.id, text }])
        return { text, location: `/data/${stored.id}` }
      })

    /** Both POSTs: the body read with its limits, then stored at most once per Idempotency-Key. */
    const post = <A extends { readonly text: string; readonly location?: string }>(
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
      .handleRaw("create", ({ headers, request }) => post(request, headers["idempotency-key"], storeOne))
      .handleRaw("createBatch", ({ headers, request }) => post(request, headers["idempotency-key"], storeBatch))
      .handle("get", ({ params, headers }) =>
        Effect.gen(function*() {
          const id = params.id.toLowerCase()
          const { answer, cache } = recordIdTime(id) === undefined
            ? { answer: Option.none(), cache: "miss" as const }
            : yield* recordCache.findById((yield* Principal).tenant, id)
          if (Option.isNone(answer)) {
            return yield* new NotFound({ detail: `No record ${params.id}` })
          }
          const cacheHeaders = recordHeaders(id, cache)
          if (headers["if-none-match"] !== undefined && matchesEtag(headers["if-none-match"], cacheHeaders.etag)) {
            return HttpServerResponse.empty({ status: 304, headers: cacheHeaders })
          }
          return HttpServerResponse.uint8Array(answer.value, { contentType: JSON_TYPE, headers: cacheHeaders })
        }).pipe(Effect.catchTag("DbError", unavailableOnTransient)))
      .handle("list", ({ query }) =>
        Effect.gen(function*() {
          const q = yield* decodeList(query)
          const tenant = (yield* Principal).tenant
          const order = q.order ?? "desc"
          const scope = { tenant, stream: q.stream, key: q.key, order }
          const from = q.from !== undefined ? new Date(Date.parse(q.from)) : undefined
          const to = q.to !== undefined ? new Date(Date.parse(q.to)) : undefined
          if (from !== undefined && to !== undefined && from.getTime() > to.getTime()) {
            return yield* validationFailed([{ path: "to", message: "must not be before from" }])
          }
          const after = q.cursor !== undefined ? cursors.decode(scope, q.cursor) : undefined
          if (q.cursor !== undefined && after === undefined) {
            return yield* validationFailed([{ path: "cursor", message: "is not a cursor we issued for this query" }])
          }
          const limit = q.limit !== undefined ? Number(q.limit) : 100
          const rows = yield* db.list({
            tenant,
            stream: q.stream,
            key: q.key,
            from,
            to,
            order,
            limit: limit + 1,
            after
          })
          const page = rows.slice(0, limit)
          const last = page.at(-1)
          const nextCursor = rows.length > limit && last !== undefined
            ? cursors.encode(scope, { occurredAt: new Date(last.occurredAt), id: last.id })
            : null
          return HttpServerResponse.text(listText(page, nextCursor), { contentType: JSON_TYPE })
        }).pipe(Effect.catchTag("DbError", unavailableOnTransient)))
  })
)

const JSON_TYPE = "application/json"
