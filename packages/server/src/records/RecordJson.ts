/** The one byte form of a stored record: what GET answers, the caches keep and events carry. */
import type { StoredRecord } from "@strata/domain"
import { compactJsonb, jsonText } from "../platform/json/ExactJson.ts"
import { parseStored, type RecordRow, storedDataText } from "./RecordRows.ts"

/** A stored record as every answer (`schemaVersion` null when absent: records stored before schemas), cache entry and event carries it: the contract's field order, data as `jsonText`. */
export const recordText = (
  record: StoredRecord,
  dataText: string = storedDataText(record) ?? jsonText(record.data)
): string =>
  answerText(record.id, record.stream, record.key, record.occurredAt, record.ingestedAt, dataText, record.schemaVersion)

/**
 * A row read from `records` as `recordText` writes its record, without making the
 * record: what an export writes, a thousand rows a page (docs/PERFORMANCE.md).
 */
export const rowText = (row: RecordRow): string =>
  answerText(
    row.id,
    row.stream,
    row.key,
    row.occurred_at,
    row.ingested_at,
    compactJsonb(row.data) ?? jsonText(parseStored(row.data)),
    row.schema_version
  )

const answerText = (
  id: string,
  stream: string,
  key: string | null,
  occurredAt: string,
  ingestedAt: string,
  dataText: string,
  schemaVersion: number | null | undefined
): string =>
  `{"id":${JSON.stringify(id)},"stream":${JSON.stringify(stream)},"key":${JSON.stringify(key)},"occurredAt":${
    JSON.stringify(occurredAt)
  },"ingestedAt":${JSON.stringify(ingestedAt)},"data":${dataText},"schemaVersion":${schemaVersion ?? null}}`
