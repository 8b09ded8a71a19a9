/**
 * `GET /data?stream=…` with `Accept: application/x-ndjson` (README: Export):
 * every record of the query (stream, key, from, to, order), one a line, each
 * exactly as `GET /data/{id}` answers it, read in keyset pages of
 * EXPORT_PAGE as the client takes them, a page or two ahead. No more than
 * five pages are held, whatever the size, and a client that goes away stops
 * the read.
 */
import type { ListQuery, ValidationFailed } from "@strata/domain"
import { Context, Effect, Layer, Stream } from "effect"
import { validationFailed } from "../platform/http/Validation.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import { type ReadNeed, ReadReplicas } from "../platform/sql/ReadReplicas.ts"
import { onReplica } from "../platform/sql/ReadTarget.ts"
import { ChangeLog } from "./ChangeLog.ts"
import { type Filter, matchesAll } from "./Filters.ts"
import { Positions } from "./Positions.ts"
import { recordText } from "./RecordJson.ts"
import { keysetOf, RecordStore } from "./RecordStore.ts"

/** Records a page of an export reads. */
export const EXPORT_PAGE = 5000

const NDJSON_ACCEPTED = /application\/(?:x-ndjson|jsonl|x-jsonlines)(?!\s*;\s*q\s*=\s*0(?:\.0*)?\s*(?:,|$))/i

/** Whether a request's `Accept` asks for NDJSON (`application/x-ndjson`, `application/jsonl`). */
export const wantsNdjson = (accept: string | undefined): boolean => accept !== undefined && NDJSON_ACCEPTED.test(accept)

type After = { readonly occurredAt: Date; readonly id: string } | undefined

export class RecordExport extends Context.Service<RecordExport, {
  /**
   * The query's records as NDJSON bytes, page by page, and the change feed's
   * head before the first page (a tail from there misses nothing after it).
   */
  readonly export: (
    tenant: string,
    query: ListQuery,
    filters?: ReadonlyArray<Filter>,
    need?: ReadNeed
  ) => Effect.Effect<
    { readonly body: Stream.Stream<Uint8Array, DbError>; readonly position: string },
    ValidationFailed | DbError
  >
}>()("strata/records/RecordExport") {
  static readonly layer: Layer.Layer<
    RecordExport,
    never,
    RecordStore | ChangeLog | Positions | ReadReplicas
  > = Layer.effect(
    RecordExport,
    Effect.gen(function*() {
      const store = yield* RecordStore
      const log = yield* ChangeLog
      const positions = yield* Positions
      const replicas = yield* ReadReplicas

      const exportOf = Effect.fnUntraced(function*(
        tenant: string,
        q: ListQuery,
        filters: ReadonlyArray<Filter> = [],
        need?: ReadNeed
      ) {
        const unbounded = [
          ...(q.limit === undefined ? [] : [{ path: "limit", message: "does not apply to an NDJSON export" }]),
          ...(q.cursor === undefined ? [] : [{ path: "cursor", message: "does not apply to an NDJSON export" }])
        ]
        if (unbounded.length > 0) return yield* validationFailed(unbounded)
        if (q.from !== undefined && q.to !== undefined && q.from.getTime() > q.to.getTime()) {
          return yield* validationFailed([{ path: "to", message: "must not be before from" }])
        }
        // On replicas when they are fresh enough (README: Read replicas): every page
        // from one that has reached the head read first, the last page on the primary.
        // A head read on the primary keeps the export there (no page waits for a replica).
        const [{ horizon }, replicated] = yield* replicas.read(Effect.all([log.horizon, onReplica]), { need })
        const page = { tenant, stream: q.stream, key: q.key, from: q.from, to: q.to, order: q.order ?? "desc" }
        const query = (after: After) => ({ ...page, limit: EXPORT_PAGE, after })
        // Without filters a page goes from rows to text with no record made for each;
        // filters read each record's data, so they check records, row by row (the
        // export reads every page anyway). A page's text is made after the next
        // page's read has started: that needs only this page's last keyset.
        const pageText = (after: After) =>
          filters.length === 0
            ? Effect.map(store.listText(query(after)), (page) => ({
              text: () => page.texts().join("\n") + "\n",
              count: page.size,
              last: page.size === 0 ? undefined : page.keyset(page.size - 1)
            }))
            : Effect.map(store.list(query(after)), (records) => {
              const last = records.at(-1)
              return {
                text: () => {
                  let text = ""
                  for (const record of records) if (matchesAll(filters, record.data)) text += `${recordText(record)}\n`
                  return text
                },
                count: records.length,
                last: last && keysetOf(last)
              }
            })
        const read = (after: After) =>
          replicas.read(pageText(after), {
            need: replicated ? horizon : "primary",
            final: (chunk) => chunk.count === EXPORT_PAGE
          })
        // Pages are read one after another (each starts after the last), in a fiber
        // of their own that runs a page ahead of the one made into text, which runs a
        // page ahead of the one the client takes: PostgreSQL reads the next page while
        // the server writes this one out. Five pages are held at most (one being read,
        // one read, one being made into text, one made, one being sent).
        const body = Stream.unfold(undefined as After | "done", (after) =>
          after === "done"
            ? Effect.succeed(undefined)
            : Effect.map(read(after), (chunk) => {
              if (chunk.count === 0) return undefined
              return [chunk, chunk.count < EXPORT_PAGE ? "done" as const : chunk.last] as const
            })).pipe(
            Stream.buffer({ capacity: 1 }),
            Stream.map((chunk): Uint8Array => Buffer.from(chunk.text())),
            Stream.buffer({ capacity: 1 })
          )
        return { body, position: positions.encode(tenant, { xid: horizon, n: 0 }) }
      })

      return RecordExport.of({ export: exportOf })
    })
  )
}
