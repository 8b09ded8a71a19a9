/**
 * Group commit (README: Storage): writes that arrive while a commit runs are
 * coalesced into the next one, a single statement for the records and their
 * outbox events. Each write (one POST, or one atomic batch) stays a unit:
 * it is stored whole or not at all, and a unit that cannot be stored does not
 * fail the others coalesced with it, which are then written again without it.
 *
 * The queue is plain code rather than Effect's RequestResolver: a write then
 * costs no fiber of its own (`submit`, for the hot routes) or one callback
 * (`write`); one fiber per batch runs the transaction.
 */
import type { StoredRecord } from "@strata/domain"
import { Array as Arr, Context, Duration, Effect, Exit, FiberSet, Layer, Metric, type Stream, Tracer } from "effect"
import { DatabaseConfig } from "../platform/config/DatabaseConfig.ts"
import { RequestId } from "../platform/http/RequestId.ts"
import { linksTo } from "../platform/observability/Tracing.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import type { FeedPosition } from "./ChangeLog.ts"
import { type Committed, RecordStore, type RecordToStore } from "./RecordStore.ts"

/** One write, committed: its records, and its position in the change feed (its last record's). */
export interface Written {
  readonly records: Arr.NonEmptyReadonlyArray<StoredRecord>
  readonly position: FeedPosition
}

/** One write: its records, who waits for them, and the request span it serves (for links). */
interface Unit {
  readonly records: Arr.NonEmptyReadonlyArray<RecordToStore>
  readonly done: (exit: Exit.Exit<Written, DbError>) => void
  readonly span: Tracer.AnySpan | undefined
}

/** The part of a commit that is one unit's: its records from `offset`, and its last record's position. */
const writtenOf = (committed: Committed, offset: number, n: number): Written => {
  // Made when asked for, as Committed's: a bulk body's chunks want only the position.
  let mine: Arr.NonEmptyReadonlyArray<StoredRecord> | undefined
  return {
    get records() {
      return mine ??= (offset === 0 && n === committed.records.length
        ? committed.records
        : committed.records.slice(offset, offset + n)) as unknown as Arr.NonEmptyReadonlyArray<StoredRecord>
    },
    position: { xid: committed.xid, n: offset + n }
  }
}

/** Called after every commit of this process: the change feed's hint that there is news (never needed for correctness). */
export type CommitListener = () => void

export const writeBatchSize = Metric.histogram("strata_write_batch_records", {
  description: "Records written per group-commit transaction",
  boundaries: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
})

export class RecordWriter extends Context.Service<RecordWriter, {
  /** Stores the records as one unit (all or none); resolves after the commit. */
  readonly write: (records: Arr.NonEmptyReadonlyArray<RecordToStore>) => Effect.Effect<Written, DbError>
  /**
   * The same in a transaction of its own, started at once beside the group
   * commits (not counted in WRITE_BATCH_CONCURRENCY): for bulk bodies, whose
   * chunks are commits of their own anyway and must not hold the writes of
   * single POSTs behind them. The caller bounds how many it runs at once.
   */
  readonly writeAlone: (records: Arr.NonEmptyReadonlyArray<RecordToStore>) => Effect.Effect<Written, DbError>
  /**
   * The same for a unit whose records arrive in chunks: written as they come, in one
   * transaction left open meanwhile, committed when `chunks` ends; the position is
   * its last record's. Undefined where the store cannot (RecordStore.insertStream).
   */
  readonly writeStream:
    | (<E>(
      chunks: Stream.Stream<Arr.NonEmptyReadonlyArray<RecordToStore>, E>
    ) => Effect.Effect<FeedPosition, E | DbError>)
    | undefined
  /** The same, for callers outside a fiber: `done` is called once, after the commit or the failure. */
  readonly submitUnsafe: (
    records: Arr.NonEmptyReadonlyArray<RecordToStore>,
    done: (exit: Exit.Exit<Written, DbError>) => void
  ) => void
  /** Adds a listener called after each commit; answers its removal. */
  readonly onCommitUnsafe: (listener: CommitListener) => () => void
}>()("strata/records/RecordWriter") {
  static readonly layer: Layer.Layer<RecordWriter, never, RecordStore | DatabaseConfig> = Layer.effect(
    RecordWriter,
    Effect.gen(function*() {
      const db = yield* RecordStore
      const config = yield* DatabaseConfig
      // Each commit runs in a fiber of its own, owned by the layer's scope.
      const runCommit = yield* FiberSet.makeRuntime<never>()
      const windowMs = Duration.toMillis(config.writeBatchWindow)
      const listeners = new Set<CommitListener>()
      const notifyCommitted = () => {
        for (const listener of listeners) listener()
      }

      const writeGroup = (units: ReadonlyArray<Unit>) => {
        const all = units.flatMap((u) => u.records) as unknown as Arr.NonEmptyReadonlyArray<RecordToStore>
        return Metric.update(writeBatchSize, all.length).pipe(
          Effect.andThen(db.insert(all)),
          Effect.matchEffect({
            onSuccess: (committed) =>
              Effect.sync(() => {
                let offset = 0
                for (const unit of units) {
                  const n = unit.records.length
                  unit.done(Exit.succeed(writtenOf(committed, offset, n)))
                  offset += n
                }
                notifyCommitted()
              }),
            // A transient failure (database down) fails everyone alike. Otherwise
            // one unit may be at fault: write each alone so the others still land.
            onFailure: (error) =>
              error.transient || units.length === 1
                ? Effect.sync(() => units.forEach((unit) => unit.done(Exit.fail(error))))
                : Effect.forEach(
                  units,
                  (unit) =>
                    Effect.map(Effect.exit(db.insert(unit.records)), (exit) => {
                      unit.done(Exit.map(exit, (committed) => writtenOf(committed, 0, unit.records.length)))
                      if (Exit.isSuccess(exit)) notifyCommitted()
                    }),
                  { discard: true }
                )
          }),
          // A defect (a bug) must still answer every waiting request.
          Effect.catchCause((cause) => Effect.sync(() => units.forEach((unit) => unit.done(Exit.failCause(cause))))),
          // The shared write runs in no caller's fiber: each record carries its own
          // tenant, and no caller's request id labels it.
          Effect.provideService(RequestId, "group-commit"),
          // No stack per span: one is captured for every commit otherwise (it showed in profiles).
          Effect.withSpan("RecordWriter.groupCommit", { root: true, links: linksTo(units) }, {
            captureStackTrace: false
          })
        )
      }

      // At most WRITE_BATCH_CONCURRENCY commits run at once; writes arriving meanwhile
      // queue for the next. So batches grow with load and commit latency by themselves,
      // and a lone write on an idle server starts at the next turn of the event loop.
      const queue: Array<Unit> = []
      let inFlight = 0
      let scheduled = false
      // The writes that waited for a commit start the next one as it ends, not a turn of
      // the event loop later: under load that turn is a whole round of other requests.
      const committed = () => {
        inFlight--
        if (queue.length > 0 && !scheduled) flush()
      }
      // Starts groups of at most WRITE_BATCH_MAX records (a larger unit stays whole) while commits may start.
      // Each group leaves the queue before it starts: a commit that ends at once (in memory) flushes again.
      const flush = () => {
        scheduled = false
        while (queue.length > 0 && inFlight < config.writeBatchConcurrency) {
          let end = 1
          let size = queue[0].records.length
          while (end < queue.length && size + queue[end].records.length <= config.writeBatchMax) {
            size += queue[end].records.length
            end++
          }
          const group = queue.splice(0, end)
          inFlight++
          runCommit(writeGroup(group)).addObserver(committed)
        }
      }

      const enqueue = (unit: Unit) => {
        queue.push(unit)
        if (scheduled || inFlight >= config.writeBatchConcurrency) return
        scheduled = true
        if (windowMs > 0) setTimeout(flush, windowMs)
        else setImmediate(flush)
      }

      return RecordWriter.of({
        writeStream: db.insertStream === undefined ? undefined : (chunks) =>
          db.insertStream!(chunks).pipe(
            Effect.tap(() => Effect.sync(notifyCommitted)),
            Effect.withSpan("RecordWriter.streamedCommit", undefined, { captureStackTrace: false })
          ),
        submitUnsafe: (records, done) => enqueue({ records, done, span: undefined }),
        onCommitUnsafe: (listener) => {
          listeners.add(listener)
          return () => void listeners.delete(listener)
        },
        write: (records) =>
          Effect.withFiber((fiber) => {
            const span = Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
            return Effect.callback<Written, DbError>((resume) => {
              enqueue({ records, done: resume, span })
            })
          }),
        writeAlone: (records) =>
          Effect.withFiber((fiber) => {
            const span = Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
            return Effect.callback<Written, DbError>((resume) => {
              runCommit(writeGroup([{ records, done: resume, span }]))
            })
          })
      })
    })
  )
}
