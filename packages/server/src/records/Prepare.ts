/**
 * Turns a validated `NewRecord` into the row to store: assigns `occurredAt`
 * (default: now) and the UUIDv7 id, and checks the serialised size of `data`.
 */
import type { FieldError, NewRecord } from "@strata/domain"
import { Result } from "effect"
import { jsonText } from "../platform/json/ExactJson.ts"
import { makeRecordId } from "./RecordId.ts"
import type { RecordToStore } from "./RecordStore.ts"

export const prepareRecord = (
  tenant: string,
  input: NewRecord,
  nowMs: number,
  maxRecordBytes: number,
  traceparent: string | null,
  path = "",
  schemaVersion: number | null = null
): Result.Result<RecordToStore, FieldError> => {
  // Serialised once: the size is checked on the text that is stored and answered.
  const dataText = jsonText(input.data)
  const size = Buffer.byteLength(dataText)
  if (size > maxRecordBytes) {
    return Result.fail({
      path: path === "" ? "data" : `${path}.data`,
      message: `is ${size} bytes serialised; at most ${maxRecordBytes} are allowed (MAX_RECORD_BYTES)`
    })
  }
  const occurredAt = input.occurredAt !== undefined ? Date.parse(input.occurredAt) : nowMs
  return Result.succeed({
    tenant,
    id: makeRecordId(occurredAt),
    stream: input.stream,
    key: input.key ?? null,
    occurredAt: new Date(occurredAt),
    data: input.data,
    dataText,
    traceparent,
    schemaVersion
  })
}
