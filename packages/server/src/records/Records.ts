/**
 * What the `/data` routes do, without HTTP: validate and store one record or an
 * atomic batch, find one by id (through the caches), and page through a stream
 * with cursors. Answers are the JSON text clients get, in the one byte form of
 * recordText. The handlers around it only read bodies, apply idempotency and
 * write headers.
 */
import { BatchRequest, type ListQuery, NewRecord, type StoredRecord, type ValidationFailed } from "@strata/domain"
import { Array as Arr, Context, Effect, Layer, Option, Result } from "effect"
import { HttpConfig } from "../platform/config/HttpConfig.ts"
import { decodeAll, validationFailed } from "../platform/http/Validation.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import { type ReadNeed, ReadReplicas } from "../platform/sql/ReadReplicas.ts"
import { SchemaRegistry } from "../schemas/SchemaRegistry.ts"
import { StreamIndexes } from "../schemas/StreamIndexes.ts"
import { StreamSchemas } from "../schemas/StreamSchemas.ts"
import { ChangeLog } from "./ChangeLog.ts"
import { Cursors } from "./Cursor.ts"
import { type Filter, filterSetKey, schemaForbids } from "./Filters.ts"
import { Positions } from "./Positions.ts"
import { prepareRecord } from "./Prepare.ts"
import { type CacheOutcome, RecordCache } from "./RecordCache.ts"
import { recordIdTime } from "./RecordId.ts"
import { recordText } from "./RecordJson.ts"
import { keysetOf, RecordStore } from "./RecordStore.ts"
import { RecordWriter } from "./RecordWriter.ts"

/** How many records a page holds when the query does not say. */
export const DEFAULT_PAGE_LIMIT = 100

/**
 * After a commit, on either request path: the answer text of each stored record
 * (in the byte form of `recordText`, its data as sent), which the record cache
 * now holds too, so the first read of a new record is a hit.
 */
export const rememberCommitted = (
  cache: RecordCache["Service"],
  tenant: string,
  stored: ReadonlyArray<StoredRecord>,
  rows: ReadonlyArray<{ readonly dataText: string }>
): Array<{ readonly id: string; readonly text: string }> => {
  const answers = stored.map((record, i) => ({ id: record.id, text: recordText(record, rows[i].dataText) }))
  cache.rememberUnsafe(tenant, answers)
  return answers
}

/** A page's answer from its records' texts (`recordText`). */
const pageText = (texts: ReadonlyArray<string>, nextCursor: string | null, scanned?: number) =>
  `{"records":[${texts.join(",")}],"nextCursor":${JSON.stringify(nextCursor)}${
    scanned === undefined ? "" : `,"scanned":${scanned}`
  }}`

export class Records extends Context.Service<Records, {
  /** Validates and stores one record; answers it with its Location, after the commit. */
  readonly create: (
    tenant: string,
    body: unknown,
    traceparent: string | null
  ) => Effect.Effect<
    { readonly text: string; readonly location: string; readonly position: string },
    DbError | ValidationFailed
  >
  /** Validates every record of the batch (each problem named) and stores all or none. */
  readonly createBatch: (
    tenant: string,
    body: unknown,
    traceparent: string | null
  ) => Effect.Effect<{ readonly text: string; readonly position: string }, DbError | ValidationFailed>
  /** The record's answer, from the first cache level that has it, and which level that was. */
  readonly find: (
    tenant: string,
    id: string
  ) => Effect.Effect<{ readonly answer: Option.Option<string>; readonly cache: CacheOutcome }, DbError>
  /**
   * One page of a stream, with the cursor of the next one (null on the last), and
   * the change feed's head when the page was read: a tail from there misses none
   * of what came after the page (it may repeat some of the page). With filters
   * (README: Filters), the page reads at most FILTER_SCAN_BUDGET rows and says
   * how many it read; it may be short, or empty, with a next cursor. Read on a
   * replica when one fits `need` (README: Read replicas); the last page always
   * on the primary.
   */
  readonly list: (
    tenant: string,
    query: ListQuery,
    filters?: ReadonlyArray<Filter>,
    need?: ReadNeed
  ) => Effect.Effect<{ readonly text: string; readonly position: string }, DbError | ValidationFailed>
  /** A validation problem naming each filter on a path the stream's schema forbids (README: Filters). */
  readonly checkFilters: (
    tenant: string,
    stream: string,
    filters: ReadonlyArray<Filter>
  ) => Effect.Effect<void, DbError | ValidationFailed>
}>()("strata/records/Records") {
  static readonly layer: Layer.Layer<
    Records,
    never,
    | RecordStore
    | RecordWriter
    | RecordCache
    | Cursors
    | StreamSchemas
    | SchemaRegistry
    | StreamIndexes
    | ReadReplicas
    | HttpConfig
    | Positions
    | ChangeLog
  > = Layer.effect(
    Records,
    Effect.gen(function*() {
      const store = yield* RecordStore
      const writer = yield* RecordWriter
      const cache = yield* RecordCache
      const cursors = yield* Cursors
      const schemas = yield* StreamSchemas
      const config = yield* HttpConfig
      const positions = yield* Positions
      const log = yield* ChangeLog
      const registry = yield* SchemaRegistry
      const indexes = yield* StreamIndexes
      const replicas = yield* ReadReplicas

      /** A filter on a path the stream's schema forbids can match nothing: a 400 naming it. */
      const checkPaths = (tenant: string, stream: string, filters: ReadonlyArray<Filter>) =>
        Effect.gen(function*() {
          if (filters.length === 0 || (yield* schemas.current(tenant, stream)) === null) return
          const current = yield* registry.current(tenant, stream)
          if (Option.isNone(current)) return
          const forbidden = filters.filter((f) => schemaForbids(current.value.schema, f.path))
          if (forbidden.length > 0) {
            return yield* validationFailed(forbidden.map((f) => ({
              path: f.parameter,
              message: `names a field the stream's schema (version ${current.value.version}) does not allow`
            })))
          }
        })
      const decodeRecord = decodeAll(NewRecord)
      const decodeBatch = decodeAll(BatchRequest)

      const create = (tenant: string, body: unknown, traceparent: string | null) =>
        Effect.gen(function*() {
          const input = yield* decodeRecord(body)
          const [version] = yield* schemas.validate(tenant, [input], () => "data")
          const row = prepareRecord(tenant, input, Date.now(), config.maxRecordBytes, traceparent, "", version)
          if (Result.isFailure(row)) return yield* validationFailed([row.failure])
          const written = yield* writer.write([row.success])
          const [{ id, text }] = rememberCommitted(cache, tenant, written.records, [row.success])
          return { text, location: `/data/${id}`, position: positions.encode(tenant, written.position) }
        })

      const createBatch = (tenant: string, body: unknown, traceparent: string | null) =>
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
          const written = yield* writer.write(valid)
          const answers = rememberCommitted(cache, tenant, written.records, valid)
          return {
            text: `{"records":[${answers.map((a) => a.text).join(",")}]}`,
            position: positions.encode(tenant, written.position)
          }
        })

      // An id that is no UUIDv7 names no record: no cache or database is asked.
      const find = (tenant: string, id: string) =>
        recordIdTime(id) === undefined
          ? Effect.succeed({ answer: Option.none<string>(), cache: "miss" as const })
          : cache.findById(tenant, id)

      const list = (tenant: string, q: ListQuery, filters: ReadonlyArray<Filter> = [], need?: ReadNeed) =>
        Effect.gen(function*() {
          const order = q.order ?? "desc"
          const scope = { tenant, stream: q.stream, key: q.key, order, filters: filterSetKey(filters) }
          if (q.from !== undefined && q.to !== undefined && q.from.getTime() > q.to.getTime()) {
            return yield* validationFailed([{ path: "to", message: "must not be before from" }])
          }
          const after = q.cursor !== undefined ? cursors.decode(scope, q.cursor) : undefined
          if (q.cursor !== undefined && after === undefined) {
            return yield* validationFailed([{ path: "cursor", message: "is not a cursor we issued for this query" }])
          }
          const limit = q.limit ?? DEFAULT_PAGE_LIMIT
          yield* checkPaths(tenant, q.stream, filters)
          const indexed = filters.length > 0 ? yield* indexes.ready(tenant, q.stream) : undefined
          // One more than the page: whether it exists says if there is a next page.
          const range = { ...scope, from: q.from, to: q.to, limit: limit + 1, after }
          const rows = filters.length > 0
            ? Effect.map(
              store.listFiltered({ ...range, filters, budget: config.filterScanBudget, indexed }),
              (found) => {
                const page = found.records.slice(0, limit)
                return {
                  texts: page.map((r) => recordText(r)),
                  resume: found.records.length > limit ? keysetOf(page.at(-1)!) : found.stoppedAt,
                  scanned: found.scanned
                }
              }
            )
            : Effect.map(store.listText(range), (found) => ({
              texts: found.texts().slice(0, limit),
              resume: found.size > limit ? found.keyset(limit - 1) : undefined,
              scanned: undefined
            }))
          // The page's head and its rows come from one node; a page that ends the
          // stream is read on the primary (ReadReplicas: absence is confirmed there).
          const readPage = Effect.gen(function*() {
            // The head before the page's own statements: whatever committed before it is on the page.
            const { horizon } = yield* log.horizon
            const { resume, scanned, texts } = yield* rows
            const nextCursor = resume === undefined ? null : cursors.encode(scope, resume)
            return {
              text: pageText(texts, nextCursor, scanned),
              position: positions.encode(tenant, { xid: horizon, n: 0 }),
              last: nextCursor === null
            }
          })
          return yield* replicas.read(readPage, { need, final: (answer) => !answer.last })
        })

      return Records.of({ create, createBatch, find, list, checkFilters: checkPaths })
    })
  )
}
