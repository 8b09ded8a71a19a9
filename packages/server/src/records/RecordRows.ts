/** How a record row of PostgreSQL becomes a stored record, for every query that reads `records`. */
import type { StoredRecord } from "@strata/domain"
import { compactJsonb, parseExact } from "../platform/json/ExactJson.ts"
import type { RecordToStore } from "./RecordStore.ts"

/**
 * A timestamp as `Date.prototype.toISOString` writes it, written by PostgreSQL:
 * cheaper there than a Date made and formatted for each row here. `MS`
 * truncates, as the driver's Dates did; records hold 1970 to a day ahead of now,
 * so the year always has four digits.
 */
const isoText = (column: string) =>
  `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS ${column}`

// `data` as text: the driver's JSON.parse would round long numbers.
export const COLUMNS = `id::text AS id, stream, key, ${isoText("occurred_at")}, ${
  isoText("ingested_at")
}, data::text AS data, schema_version`
/** The same columns as stored, for a subquery that COLUMNS then reads (its ORDER BY keeps the index's types). */
export const RAW_COLUMNS = "id, stream, key, occurred_at, ingested_at, data, schema_version"

export interface RecordRow {
  readonly id: string
  readonly stream: string
  readonly key: string | null
  /** ISO text (`toISOString`'s form). */
  readonly occurred_at: string
  readonly ingested_at: string
  readonly data: string
  readonly schema_version: number | null
}

/** JSON that PostgreSQL wrote: every number fits `parseExact`. */
export const parseStored = <A>(text: string): A => {
  const parsed = parseExact(text)
  if (parsed._tag === "Inexact") throw new Error(`stored JSON holds an unreadable number at ${parsed.path.join(".")}`)
  return parsed.value as A
}

/** An outbox payload written before schemas existed has no schemaVersion: null, as for its record. */
export const withSchemaVersion = (record: Omit<StoredRecord, "schemaVersion"> & { schemaVersion?: number | null }) => ({
  ...record,
  schemaVersion: record.schemaVersion ?? null
})

/** Where a record read from a row keeps its data's text (`storedDataText`). */
const DATA_TEXT: unique symbol = Symbol("strata/records/DataText")

/**
 * A row as a stored record. Its data is kept as the text answers carry
 * (`compactJsonb`) and parsed only if something reads `data`: pages, exports and
 * reads by id answer text, and parsing each record's data to write it out again
 * took a third of the server's time serving pages (docs/PERFORMANCE.md).
 */
export const toRecord = (row: RecordRow): StoredRecord => {
  const text = compactJsonb(row.data)
  if (text === undefined) {
    return {
      id: row.id,
      stream: row.stream,
      key: row.key,
      occurredAt: row.occurred_at,
      ingestedAt: row.ingested_at,
      data: parseStored(row.data),
      schemaVersion: row.schema_version ?? null
    }
  }
  // An accessor written in the literal costs V8 far less than one defined afterwards.
  const record = {
    id: row.id,
    stream: row.stream,
    key: row.key,
    occurredAt: row.occurred_at,
    ingestedAt: row.ingested_at,
    get data(): StoredRecord["data"] {
      const data = parseStored<StoredRecord["data"]>(row.data)
      Object.defineProperty(this, "data", { value: data, configurable: true, enumerable: true, writable: true })
      return data
    },
    set data(data: StoredRecord["data"]) {
      delete (this as { [DATA_TEXT]?: string })[DATA_TEXT]
      Object.defineProperty(this, "data", { value: data, configurable: true, enumerable: true, writable: true })
    },
    schemaVersion: row.schema_version ?? null
  }
  // Not enumerable: a copy (`{ ...record, data }`) must not carry the text of other data.
  Object.defineProperty(record, DATA_TEXT, { value: text, configurable: true })
  return record
}

/** The text of a record's data as read from its row, when `toRecord` kept it; undefined otherwise. */
export const storedDataText = (record: StoredRecord): string | undefined =>
  (record as { readonly [DATA_TEXT]?: string })[DATA_TEXT]

/** `ingestedAt` as ISO text: one for a whole group commit. */
export const storedOf = (r: RecordToStore, ingestedAt: string): StoredRecord => ({
  id: r.id,
  stream: r.stream,
  key: r.key,
  occurredAt: r.occurredAt.toISOString(),
  ingestedAt,
  data: r.data,
  schemaVersion: r.schemaVersion
})
