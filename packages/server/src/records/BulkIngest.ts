/**
 * `POST /data/bulk` without HTTP (README: Bulk ingest): an NDJSON body read
 * as it arrives (decompressed on the way, ContentCoding.ts), one record
 * envelope a line, each line checked as `POST /data` checks its body (the
 * envelope, exact numbers, the stream's schema, MAX_RECORD_BYTES), and the
 * good ones written through the group commit (RecordWriter) with their ids,
 * outbox events and changes like every other write.
 *
 * - `atomic`: the records go in as one unit, in one transaction of their own, so
 *   a bad line or a failed commit leaves nothing stored. On PostgreSQL the
 *   transaction opens with the first chunk of BULK_CHUNK good lines and takes
 *   each chunk while the body still arrives (RecordWriter.writeStream); it
 *   commits only once the body has ended with no bad line (and its
 *   Idempotency-Key is claimed), and rolls back at the first bad line or when
 *   the request ends otherwise. So memory stays flat and checking overlaps
 *   writing. On the embedded database (one connection) the checked rows are
 *   held and written at the end: MAX_BULK_BYTES bounds them.
 * - `partial`: the good lines are written in chunks of BULK_CHUNK while the
 *   body still arrives, each a transaction of its own, at most two at once (the
 *   body is not read further meanwhile), so memory stays flat and PostgreSQL
 *   writes on two connections.
 * Bulk commits run beside the group commit (RecordWriter.writeAlone), never
 * holding single POSTs behind a body.
 * - With an Idempotency-Key, the body's hash decides before anything is
 *   written, so partial mode holds its rows until the body has ended too.
 */
import {
  type BulkMode,
  type FieldError,
  isNewRecord,
  type LineError,
  MalformedRequest,
  NewRecord,
  PayloadTooLarge,
  ValidationFailed
} from "@strata/domain"
import { Array as Arr, type Cause, Context, Effect, Fiber, Layer, Queue, Result, Schema, Stream } from "effect"
import { pipeline, Readable } from "node:stream"
import { HttpConfig } from "../platform/config/HttpConfig.ts"
import { type Coding, corruptBody, decoderFor } from "../platform/http/ContentCoding.ts"
import { type Line, LineSplitter } from "../platform/http/NdjsonLines.ts"
import { formatPath, toFieldErrors } from "../platform/http/Validation.ts"
import { MAX_DECIMAL_EXPONENT, parseExact } from "../platform/json/ExactJson.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import { type CompiledSchema, StreamSchemas } from "../schemas/StreamSchemas.ts"
import { type FeedPosition, laterOf } from "./ChangeLog.ts"
import { prepareRecord } from "./Prepare.ts"
import type { RecordToStore } from "./RecordStore.ts"
import { RecordWriter } from "./RecordWriter.ts"

/** Records per write while a partial body streams: a group commit's worth. */
export const BULK_CHUNK = 1000
/** Chunks of a partial body waiting for their commit before the body is read further. */
const CHUNKS_IN_FLIGHT = 2
/** How many bad lines an answer lists (it counts them all). */
export const BULK_ERRORS_LISTED = 100
/** What a line may hold beyond its `data` (MAX_RECORD_BYTES): the stream, key, occurredAt and the JSON around them. */
export const ENVELOPE_BYTES = 16 * 1024

const utf8 = new TextDecoder("utf-8", { fatal: true })
const decodeRecord = Schema.decodeUnknownResult(NewRecord)

export interface BulkInput {
  readonly tenant: string
  readonly body: Stream.Stream<Uint8Array, unknown>
  readonly coding: Coding | null
  readonly mode: BulkMode
  readonly traceparent: string | null
  /** Each chunk of the body as sent (for the Idempotency-Key's hash): writing waits for the whole body. */
  readonly onSent?: ((bytes: Uint8Array) => void) | undefined
}

/** What the body held, once read: the count of lines, the bad ones, and the records written or to write. */
export interface BulkRead {
  readonly mode: BulkMode
  readonly tenant: string
  readonly received: number
  readonly rejected: number
  readonly errors: ReadonlyArray<LineError>
  /** Records checked and not written yet. */
  readonly rows: ReadonlyArray<RecordToStore>
  /** An atomic body's transaction, open and holding its records but `rows`, when it streamed into one. */
  readonly open: Transaction | undefined
  /** Records written while the body streamed, and the position of the latest write. */
  readonly written: number
  readonly position: FeedPosition | undefined
}

export interface BulkWritten {
  readonly received: number
  readonly accepted: number
  readonly rejected: number
  readonly errors: ReadonlyArray<LineError>
  readonly position: FeedPosition | undefined
}

/**
 * An atomic body's open transaction (RecordWriter.writeStream): the chunks on their
 * way to it, and the fiber that writes them and commits once the queue ends.
 */
export interface Transaction {
  readonly queue: Queue.Queue<Arr.NonEmptyReadonlyArray<RecordToStore>, Cause.Done>
  readonly fiber: Fiber.Fiber<FeedPosition, DbError>
}

export const bulkResultText = (r: BulkWritten): string =>
  JSON.stringify({ received: r.received, accepted: r.accepted, rejected: r.rejected, errors: r.errors })

export class BulkIngest extends Context.Service<BulkIngest, {
  /** Reads and checks the body; in partial mode without a hash to wait for, writes as it goes. */
  readonly read: (input: BulkInput) => Effect.Effect<BulkRead, PayloadTooLarge | MalformedRequest | DbError>
  /** Writes what `read` left to write; atomic mode with a bad line fails with every line listed. */
  readonly write: (read: BulkRead) => Effect.Effect<BulkWritten, ValidationFailed | DbError>
}>()("strata/records/BulkIngest") {
  static readonly layer: Layer.Layer<BulkIngest, never, HttpConfig | StreamSchemas | RecordWriter> = Layer.effect(
    BulkIngest,
    Effect.gen(function*() {
      const config = yield* HttpConfig
      const schemas = yield* StreamSchemas
      const writer = yield* RecordWriter
      const maxLineBytes = config.maxRecordBytes + ENVELOPE_BYTES

      const read = Effect.fnUntraced(function*(input: BulkInput) {
        const streaming = input.mode === "partial" && input.onSent === undefined
        const writeStream = input.mode === "atomic" ? writer.writeStream : undefined
        const sent = input.onSent === undefined
          ? input.body
          : Stream.map(input.body, (bytes) => {
            input.onSent!(bytes)
            return bytes
          })
        const source = Readable.from(yield* Stream.toAsyncIterableEffect(sent), { objectMode: false })
        let decoderFailed = false
        const decoded = input.coding === null ? source : pipeline(source, decoderFor(input.coding), (error) => {
          if (error !== undefined && error !== null && !source.errored) decoderFailed = true
        })
        const chunks = decoded[Symbol.asyncIterator]()

        const splitter = new LineSplitter(maxLineBytes)
        const lines: Array<Line> = []
        const collect = (line: Line) => void lines.push(line)
        const errors: Array<LineError> = []
        let rejected = 0
        let received = 0
        let size = 0
        let rows: Array<RecordToStore> = []
        let written = 0
        let position: FeedPosition | undefined
        const pending: Array<Fiber.Fiber<{ readonly n: number; readonly position: FeedPosition }, DbError>> = []
        let unit: Transaction | undefined
        const now = Date.now()

        const reject = (line: number, fieldErrors: ReadonlyArray<FieldError>) => {
          rejected++
          for (const e of fieldErrors) {
            if (errors.length < BULK_ERRORS_LISTED) errors.push({ ...e, line })
          }
        }
        const tooLarge = (detail: string) => new PayloadTooLarge({ detail })
        const settle = (fiber: (typeof pending)[number]) =>
          Effect.map(Fiber.join(fiber), (w) => {
            written += w.n
            position = position === undefined ? w.position : laterOf(position, w.position)
          })
        const flush = Effect.fnUntraced(function*() {
          if (!Arr.isArrayNonEmpty(rows)) return
          const chunk = rows
          rows = []
          pending.push(
            yield* Effect.forkChild(
              Effect.map(writer.writeAlone(chunk), (w) => ({ n: chunk.length, position: w.position }))
            )
          )
          while (pending.length >= CHUNKS_IN_FLIGHT) yield* settle(pending.shift()!)
        })

        /** An atomic body's chunk into its transaction, opened with the first; waits while the one before is written. */
        const send = Effect.fnUntraced(function*() {
          if (!Arr.isArrayNonEmpty(rows)) return
          const chunk = rows
          rows = []
          if (unit === undefined) {
            const queue = yield* Queue.bounded<Arr.NonEmptyReadonlyArray<RecordToStore>, Cause.Done>(1)
            // Ended early (a failed statement), the transaction shuts its queue: the offer below says so.
            const fiber = yield* Effect.forkChild(
              Effect.ensuring(writeStream!(Stream.fromQueue(queue)), Queue.shutdown(queue))
            )
            unit = { queue, fiber }
          }
          if (!(yield* Queue.offer(unit.queue, chunk))) {
            yield* Fiber.join(unit.fiber)
            return yield* Effect.die(new Error("a bulk transaction ended before its body"))
          }
        })
        /** The first bad line of an atomic body: nothing of it will be stored, so its transaction ends now. */
        const abandon = Effect.fnUntraced(function*() {
          rows = []
          if (unit === undefined) return
          yield* Fiber.interrupt(unit.fiber)
          unit = undefined
        })

        /**
         * A line up to its envelope: the record, or undefined when the line is blank or
         * rejected (counted here). Plain code: no Effect per line.
         */
        const parseLine = (line: Line): NewRecord | undefined => {
          if (line.bytes === undefined) {
            reject(line.number, [{
              path: "(line)",
              message:
                `is ${line.length} bytes; a line may be at most ${maxLineBytes} (MAX_RECORD_BYTES for data, and ${ENVELOPE_BYTES} for the rest)`
            }])
            return undefined
          }
          let text: string
          try {
            text = utf8.decode(line.bytes)
          } catch {
            reject(line.number, [{ path: "(line)", message: "is not valid UTF-8" }])
            return undefined
          }
          let value: unknown
          try {
            const parsed = parseExact(text)
            if (parsed._tag !== "Parsed") {
              reject(line.number, [{
                path: formatPath(parsed.path),
                message:
                  `must be a number with a decimal exponent within ±${MAX_DECIMAL_EXPONENT} (it could not be stored exactly)`
              }])
              return undefined
            }
            value = parsed.value
          } catch (error) {
            // Only whitespace: a blank line, which holds no record.
            if (text.trim() === "") {
              received--
              return undefined
            }
            reject(line.number, [{
              path: "(line)",
              message: `is not valid JSON: ${error instanceof SyntaxError ? error.message : "unreadable"}`
            }])
            return undefined
          }
          if (isNewRecord(value)) return value
          const decoded = decodeRecord(value, { errors: "all", onExcessProperty: "error" })
          if (Result.isSuccess(decoded)) return decoded.success
          // A line that is no object at all is named as the line, not as a request body.
          reject(
            line.number,
            toFieldErrors(decoded.failure.issue).map((e) => e.path === "(body)" ? { ...e, path: "(line)" } : e)
          )
          return undefined
        }

        /** The rest of a line's checks, with its stream's schema: its row is kept, or the line rejected. */
        const keep = (lineNumber: number, record: NewRecord, schema: CompiledSchema | null) => {
          if (schema !== null) {
            const violations = schema.violations(record.data, "data")
            if (violations.length > 0) return reject(lineNumber, violations)
          }
          const row = prepareRecord(
            input.tenant,
            record,
            now,
            config.maxRecordBytes,
            input.traceparent,
            "",
            schema?.version ?? null
          )
          if (Result.isFailure(row)) return reject(lineNumber, [row.failure])
          // An atomic body with a bad line stores nothing: its later rows are checked, not kept.
          if (input.mode === "partial" || rejected === 0) rows.push(row.success)
        }

        const check = Effect.fnUntraced(function*(batch: ReadonlyArray<Line>) {
          for (const line of batch) {
            if (line.length === 0) continue
            if (++received > config.maxBulkRecords) {
              return yield* tooLarge(`The body may hold at most ${config.maxBulkRecords} records (MAX_BULK_RECORDS)`)
            }
            const record = parseLine(line)
            if (record === undefined) continue
            // The stream's schema as this process knows it; read once when it does not.
            const known = schemas.peekUnsafe(input.tenant, record.stream)
            keep(line.number, record, known === undefined ? yield* schemas.current(input.tenant, record.stream) : known)
            if (rows.length < BULK_CHUNK) continue
            if (streaming) yield* flush()
            else if (writeStream !== undefined && rejected === 0) yield* send()
          }
          if (writeStream !== undefined && rejected > 0) yield* abandon()
        })

        const readAll = Effect.gen(function*() {
          for (;;) {
            const next = yield* Effect.tryPromise({
              try: () => chunks.next(),
              catch: (error) => error
            }).pipe(
              Effect.catch((error) =>
                decoderFailed && input.coding !== null
                  ? Effect.fail(corruptBody(input.coding))
                  : Effect.fail(
                    new MalformedRequest({
                      detail: `The body could not be read${error instanceof Error ? `: ${error.message}` : ""}`
                    })
                  )
              )
            )
            if (next.done === true) break
            const chunk = next.value as Buffer
            size += chunk.length
            if (size > config.maxBulkBytes) {
              return yield* tooLarge(
                `The body may be at most ${config.maxBulkBytes} bytes (MAX_BULK_BYTES), counted ${
                  input.coding === null ? "as sent" : "decompressed"
                }`
              )
            }
            splitter.push(chunk, collect)
            yield* check(lines)
            lines.length = 0
          }
          splitter.end(collect)
          yield* check(lines)
          if (streaming) {
            yield* flush()
            while (pending.length > 0) yield* settle(pending.shift()!)
          }
          return {
            mode: input.mode,
            tenant: input.tenant,
            received,
            rejected,
            errors,
            rows,
            open: unit,
            written,
            position
          } satisfies BulkRead
        })

        /**
         * A partial body refused midway: chunks on their way commit whatever happens, so the
         * answer waits for them and says how many records the lines before the problem stored.
         */
        const withStored = <E extends PayloadTooLarge | MalformedRequest>(problem: E) =>
          Effect.gen(function*() {
            while (pending.length > 0) yield* Effect.ignore(settle(pending.shift()!))
            if (written === 0) return yield* Effect.fail(problem)
            const Problem = problem.constructor as new(fields: { readonly detail: string }) => E
            return yield* Effect.fail(
              new Problem({ detail: `${problem.detail}; the ${written} records of the lines before it were stored` })
            )
          })

        return yield* readAll.pipe(
          Effect.catchTags({ PayloadTooLarge: withStored, MalformedRequest: withStored }),
          // Whatever stops the read (a limit, a bad stream, a client gone, the deadline) stops the body.
          Effect.ensuring(Effect.sync(() => {
            source.destroy()
            decoded.destroy()
          }))
        )
      })

      const write = Effect.fnUntraced(function*(read: BulkRead) {
        if (read.mode === "atomic" && read.rejected > 0) {
          return yield* new ValidationFailed({
            detail: `${read.rejected} of ${read.received} lines are invalid; nothing was stored`,
            errors: read.errors
          })
        }
        if (read.open !== undefined) {
          // The rows left, then the end of the chunks: the transaction commits.
          if (Arr.isReadonlyArrayNonEmpty(read.rows)) yield* Queue.offer(read.open.queue, read.rows)
          yield* Queue.end(read.open.queue)
          const position = yield* Fiber.join(read.open.fiber)
          return {
            received: read.received,
            accepted: position.n,
            rejected: 0,
            errors: read.errors,
            position
          } satisfies BulkWritten
        }
        let written = read.written
        let position = read.position
        const rows = read.rows
        // Atomic: one unit, one transaction. Partial (its body held for an Idempotency-Key): chunk by chunk.
        const size = read.mode === "atomic" ? rows.length : BULK_CHUNK
        for (let at = 0; at < rows.length; at += size) {
          const chunk = rows.slice(at, at + size)
          if (!Arr.isArrayNonEmpty(chunk)) break
          const w = yield* writer.writeAlone(chunk)
          written += chunk.length
          position = position === undefined ? w.position : laterOf(position, w.position)
        }
        return {
          received: read.received,
          accepted: written,
          rejected: read.rejected,
          errors: read.errors,
          position
        } satisfies BulkWritten
      })

      return BulkIngest.of({ read, write })
    })
  )
}
