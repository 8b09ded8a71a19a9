/**
 * `POST /data/bulk` (README: Bulk ingest): NDJSON in, one record envelope a
 * line, and the account of what became of every line.
 */
import { Schema } from "effect"

export const BulkMode = Schema.Literals(["atomic", "partial"]).annotate({
  description:
    "atomic (the default): any bad line is a 400 listing the bad lines, and nothing is stored. partial: the good lines are stored and the bad ones reported."
})
export type BulkMode = typeof BulkMode.Type

export const BulkQuery = Schema.Struct({
  mode: Schema.optionalKey(BulkMode)
})
export type BulkQuery = typeof BulkQuery.Type

export const LineError = Schema.Struct({
  line: Schema.Int.annotate({ description: "The line's number in the body, from 1 (blank lines count)." }),
  path: Schema.String.annotate({ description: "The field, as in other problems (`data.amount`), or `(line)`." }),
  message: Schema.String,
  keyword: Schema.optionalKey(Schema.String),
  schemaVersion: Schema.optionalKey(Schema.Int)
}).annotate({ identifier: "LineError", description: "Why one line of a bulk body was not stored." })
export type LineError = typeof LineError.Type

export const BulkResult = Schema.Struct({
  received: Schema.Int.annotate({ description: "Lines that held something (blank lines are not counted)." }),
  accepted: Schema.Int.annotate({ description: "Records stored, every one committed before this answer." }),
  rejected: Schema.Int,
  errors: Schema.Array(LineError).annotate({
    description: "The rejected lines, in order, the first 100 (BULK_ERRORS_LISTED) of them."
  })
}).annotate({ identifier: "BulkResult" })
export type BulkResult = typeof BulkResult.Type
