/**
 * Group commit (SPEC §5): concurrent writes arriving within WRITE_BATCH_WINDOW
 * are coalesced into one transaction with one multi-row insert for records and
 * one for the outbox. Each write (one POST, or one atomic batch) stays a unit:
 * it is stored whole or not at all, and a unit that cannot be stored does not
 * fail the others coalesced with it, which are then written again without it.
 */
import type { StoredRecord } from "@strata/domain"
import { Array as Arr, Context, Effect, Exit, Layer, Metric, Request, RequestResolver, Tracer } from "effect"
import { AppConfig } from "../config/AppConfig.ts"
import { Db, type RecordToStore } from "../db/Db.ts"
import type { DbError } from "../db/DbError.ts"
import { RequestId } from "../http/RequestId.ts"

class WriteUnit extends Request.Class<
  { readonly records: Arr.NonEmptyReadonlyArray<RecordToStore> },
  Arr.NonEmptyReadonlyArray<StoredRecord>,
  DbError
> {}

export const writeBatchSize = Metric.histogram("strata_write_batch_records", {
  description: "Records written per group-commit transaction",
  boundaries: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
})

/** The sampled request spans a shared commit serves, as links (a trace viewer leads from each to the commit). */
const linksOf = (entries: ReadonlyArray<Request.Entry<WriteUnit>>): Array<Tracer.SpanLink> => {
  const links: Array<Tracer.SpanLink> = []
  for (const entry of entries) {
    const span = Context.getOrUndefined(entry.context as Context.Context<never>, Tracer.ParentSpan)
    if (span !== undefined && span.sampled && links.length < 128) links.push({ span, attributes: {} })
  }
  return links
}

/** Splits units into groups of at most `max` records; a larger unit stays whole. */
const chunkByRecords = <A extends { readonly request: WriteUnit }>(units: ReadonlyArray<A>, max: number) => {
  const groups: Array<Arr.NonEmptyArray<A>> = []
  let current: Array<A> = []
  let size = 0
  for (const unit of units) {
    if (current.length > 0 && size + unit.request.records.length > max) {
      groups.push(current as Arr.NonEmptyArray<A>)
      current = []
      size = 0
    }
    current.push(unit)
    size += unit.request.records.length
  }
  if (current.length > 0) groups.push(current as Arr.NonEmptyArray<A>)
  return groups
}

export class RecordWriter extends Context.Service<RecordWriter, {
  /** Stores the records as one unit (all or none); resolves after the commit. */
  readonly write: (
    records: Arr.NonEmptyReadonlyArray<RecordToStore>
  ) => Effect.Effect<Arr.NonEmptyReadonlyArray<StoredRecord>, DbError>
}>()("strata/RecordWriter") {
  static readonly layer: Layer.Layer<RecordWriter, never, Db | AppConfig> = Layer.effect(
    RecordWriter,
    Effect.gen(function*() {
      const db = yield* Db
      const config = yield* AppConfig

      const writeGroup = (entries: Arr.NonEmptyArray<Request.Entry<WriteUnit>>) => {
        const all = Arr.flatMap(entries, (e) => e.request.records) as Arr.NonEmptyArray<RecordToStore>
        return Metric.update(writeBatchSize, all.length).pipe(
          Effect.andThen(db.insert(all)),
          Effect.matchEffect({
            onSuccess: (stored) =>
              Effect.sync(() => {
                let offset = 0
                for (const entry of entries) {
                  const n = entry.request.records.length
                  entry.completeUnsafe(
                    Exit.succeed(stored.slice(offset, offset + n) as unknown as Arr.NonEmptyReadonlyArray<StoredRecord>)
                  )
                  offset += n
                }
              }),
            // A transient failure (database down) fails everyone alike. Otherwise
            // one unit may be at fault: write each alone so the others still land.
            onFailure: (error) =>
              error.transient || entries.length === 1
                ? Effect.sync(() => entries.forEach((entry) => entry.completeUnsafe(Exit.fail(error))))
                : Effect.forEach(
                  entries,
                  (entry) =>
                    Effect.exit(db.insert(entry.request.records)).pipe(
                      Effect.map((exit) => entry.completeUnsafe(exit))
                    ),
                  { discard: true }
                )
          })
        )
      }

      const resolver = RequestResolver.make<WriteUnit>((entries) =>
        Effect.forEach(chunkByRecords(entries, config.writeBatchMax), writeGroup, { discard: true }).pipe(
          // The batch runs in the first caller's fiber: each record carries its
          // own tenant, and the caller's request id does not label the shared write.
          Effect.provideService(RequestId, "group-commit"),
          Effect.withSpan("RecordWriter.groupCommit", { root: true, links: linksOf(entries) })
        )
      ).pipe(
        RequestResolver.setDelay(config.writeBatchWindow),
        RequestResolver.batchN(config.writeBatchMax)
      )

      return RecordWriter.of({
        write: (records) => Effect.request(new WriteUnit({ records }), resolver)
      })
    })
  )
}
