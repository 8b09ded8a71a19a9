/** The one byte form of a stored record: what GET answers, the caches keep and events carry. */
import type { StoredRecord } from "@strata/domain"
import { jsonText } from "../platform/json/ExactJson.ts"
import { storedDataText } from "./RecordRows.ts"

/** A stored record as every answer (`schemaVersion` null when absent: records stored before schemas), cache entry and event carries it: the contract's field order, data as `jsonText`. */
export const recordText = (
  record: StoredRecord,
  dataText: string = storedDataText(record) ?? jsonText(record.data)
): string =>
  `{"id":${JSON.stringify(record.id)},"stream":${JSON.stringify(record.stream)},"key":${
    JSON.stringify(record.key)
  },"occurredAt":${JSON.stringify(record.occurredAt)},"ingestedAt":${
    JSON.stringify(record.ingestedAt)
  },"data":${dataText},"schemaVersion":${record.schemaVersion ?? null}}`
