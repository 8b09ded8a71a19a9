import type { StoredRecord } from "@strata/domain"

/**
 * One outbox row: the event of one stored record, which the write that stores
 * the record leaves in the outbox (so its shape is the records feature's) and
 * the relay publishes.
 */
export interface OutboxEvent {
  readonly seq: string
  readonly tenant: string
  readonly messageKey: string
  readonly record: StoredRecord
  readonly traceparent: string | null
  /** When the transaction that stored the record wrote it (epoch ms): the start of the delivery lag. */
  readonly storedAt: number
}
