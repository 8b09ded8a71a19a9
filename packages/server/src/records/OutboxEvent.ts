/**
 * One outbox row: the event of one stored record, which the write that stores
 * the record leaves in the outbox (so its shape is the records feature's) and
 * the relay publishes.
 */
export interface OutboxEvent {
  readonly seq: string
  readonly tenant: string
  readonly messageKey: string
  readonly recordId: string
  readonly stream: string
  /** The version of the stream's schema the record was validated against; null: none. */
  readonly schemaVersion: number | null
  /** The record as `GET /data/{id}` answers it (`recordText`): the event's value, byte for byte. */
  readonly text: string
  readonly traceparent: string | null
  /** When the transaction that stored the record wrote it (epoch ms): the start of the delivery lag. */
  readonly storedAt: number
}
