/**
 * The record as clients send it and as the API returns it (README: The API).
 */
import { Schema } from "effect"

export const STREAM_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/
/** ISO 8601 date-time with an explicit zone, e.g. `2026-11-24T10:00:00.000Z` or `…+01:00`. */
export const ISO_DATE_TIME_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})$/
export const MAX_DATA_DEPTH = 32
/** How far into the future `occurredAt` may lie. */
export const MAX_FUTURE_MS = 24 * 60 * 60 * 1000

export const StreamName = Schema.String.check(
  Schema.isPattern(STREAM_PATTERN, { message: `must match ${STREAM_PATTERN.source}` })
).annotate({ description: "The kind of record, e.g. `orders` or `sensor.temp`.", examples: ["orders"] })

export const RecordKey = Schema.String.check(
  Schema.isMinLength(1, { message: "must be 1 to 256 characters" }),
  Schema.isMaxLength(256, { message: "must be 1 to 256 characters" }),
  Schema.makeFilter((s) => isCleanString(s) || "must not contain NUL or unpaired surrogates")
).annotate({ description: "The entity the record is about; events with one key keep their order." })

const ISO_DAY = /^\d{4}-\d{2}-(\d{2})/

/** A parseable instant on a day that exists: `Date.parse` rolls 2026-02-30 over to March 2. */
export const isValidInstant = (s: string): boolean => {
  if (Number.isNaN(Date.parse(s))) return false
  // Every month has a 28th: only later days need the calendar.
  const dayOfMonth = ISO_DAY.exec(s)
  if (dayOfMonth !== null && Number(dayOfMonth[1]) <= 28) return true
  const [year, month, day] = s.slice(0, 10).split("-").map(Number) as [number, number, number]
  const lastDay = new Date(0)
  lastDay.setUTCFullYear(year, month, 0) // day 0 of the next month (Date.UTC would map years 0-99 to 19xx)
  return day <= lastDay.getUTCDate()
}

/** An ISO 8601 instant with a zone. */
export const IsoDateTime = Schema.String.check(
  Schema.isPattern(ISO_DATE_TIME_PATTERN, {
    message: "must be an ISO 8601 date-time with a zone, e.g. 2026-11-24T10:00:00Z"
  }),
  Schema.makeFilter((s) => isValidInstant(s) || "is not a valid date-time")
).annotate({ format: "date-time" })

/** `occurredAt` as accepted on input: from 1970-01-01 up to 24 h ahead of the server's clock. */
export const OccurredAt = IsoDateTime.check(
  Schema.makeFilter((s) => {
    const ms = Date.parse(s)
    return (ms >= 0 && ms <= Date.now() + MAX_FUTURE_MS) || "must lie between 1970-01-01 and 24 hours from now"
  })
)

/** True when a string holds no NUL and no lone surrogate (PostgreSQL's jsonb rejects both). */
export const isCleanString = (s: string): boolean => s.isWellFormed() && !s.includes("\u0000")

/**
 * Reports the first reason a JSON value cannot be stored: nesting deeper than
 * {@link MAX_DATA_DEPTH}, or a string or key with NUL / a lone surrogate.
 * Recursion stops at that depth, so a body nested thousands deep cannot overflow the stack.
 */
export const checkJsonValue = (value: unknown): string | undefined => checkAt(value, 1)

const checkAt = (node: unknown, depth: number): string | undefined => {
  if (typeof node === "string") {
    return isCleanString(node) ? undefined : "must not contain strings with NUL or unpaired surrogates"
  }
  if (node === null || typeof node !== "object") return undefined
  if (depth > MAX_DATA_DEPTH) return `must not nest deeper than ${MAX_DATA_DEPTH} levels`
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) {
      const reason = checkAt(node[i], depth + 1)
      if (reason !== undefined) return reason
    }
    return undefined
  }
  for (const key of Object.keys(node)) {
    if (!isCleanString(key)) return "must not contain keys with NUL or unpaired surrogates"
    const reason = checkAt((node as Record<string, unknown>)[key], depth + 1)
    if (reason !== undefined) return reason
  }
  return undefined
}

export const RecordData = Schema.JsonObject.check(
  Schema.makeFilter((data) => checkJsonValue(data) ?? true)
).annotate({ description: "Any JSON object, at most MAX_RECORD_BYTES serialised and 32 levels deep." })

/** A UUID in canonical text form. Ids issued by Strata are UUIDv7. */
export const RecordId = Schema.String.check(
  Schema.isPattern(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, {
    message: "must be a UUID"
  })
).annotate({ description: "A UUIDv7 whose time prefix is occurredAt.", format: "uuid" })

/** The body of `POST /data`, and one item of `POST /data/batch`. */
export const NewRecord = Schema.Struct({
  stream: StreamName,
  key: Schema.optionalKey(Schema.NullOr(RecordKey)),
  occurredAt: Schema.optionalKey(OccurredAt),
  data: RecordData
}).annotate({ identifier: "NewRecord" })
export type NewRecord = typeof NewRecord.Type

const NEW_RECORD_FIELDS = new Set(["stream", "key", "occurredAt", "data"])

const isPlainObject = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

/**
 * The same verdict as decoding `NewRecord` (with excess properties an error), as
 * one compiled check for the write path: true means the decode succeeds and
 * gives the value back as it is. The property tests hold the two together.
 */
export const isNewRecord = (u: unknown): u is NewRecord => {
  if (!isPlainObject(u)) return false
  for (const field in u) if (!NEW_RECORD_FIELDS.has(field)) return false
  const { data, key, occurredAt, stream } = u
  if (typeof stream !== "string" || !STREAM_PATTERN.test(stream)) return false
  if (
    key !== undefined && key !== null &&
    (typeof key !== "string" || key.length < 1 || key.length > 256 || !isCleanString(key))
  ) return false
  if (occurredAt !== undefined) {
    if (typeof occurredAt !== "string" || !ISO_DATE_TIME_PATTERN.test(occurredAt) || !isValidInstant(occurredAt)) {
      return false
    }
    const ms = Date.parse(occurredAt)
    if (ms < 0 || ms > Date.now() + MAX_FUTURE_MS) return false
  }
  return isPlainObject(data) && checkJsonValue(data) === undefined
}

/** A stored record, as every read returns it. */
export const StoredRecord = Schema.Struct({
  id: RecordId,
  stream: Schema.String,
  key: Schema.NullOr(Schema.String),
  occurredAt: IsoDateTime,
  ingestedAt: IsoDateTime,
  data: Schema.JsonObject,
  schemaVersion: Schema.NullOr(Schema.Int).annotate({
    description: "The version of the stream's schema `data` was validated against; null when the stream had none."
  })
}).annotate({ identifier: "Record" })
export type StoredRecord = typeof StoredRecord.Type

export const BatchRequest = Schema.Struct({
  records: Schema.Array(NewRecord)
}).annotate({ identifier: "BatchRequest" })
export type BatchRequest = typeof BatchRequest.Type

export const RecordList = Schema.Struct({
  records: Schema.Array(StoredRecord)
}).annotate({ identifier: "RecordList" })

export const RecordPage = Schema.Struct({
  records: Schema.Array(StoredRecord),
  nextCursor: Schema.NullOr(Schema.String),
  scanned: Schema.optionalKey(Schema.Int.annotate({
    description: "On a filtered page: how many rows it read (at most FILTER_SCAN_BUDGET)."
  }))
}).annotate({ identifier: "RecordPage" })
export type RecordPage = typeof RecordPage.Type
