/**
 * The tables of the in-memory stores (tests, no database): the records and the
 * outbox that one write fills together, shared by RecordStore.layerMemory and
 * OutboxStore.layerMemory as PostgreSQL's tables are shared by their layerPg.
 */
import type { StoredRecord } from "@strata/domain"
import { Context, Layer } from "effect"

/** An outbox row: the event of one stored record, waiting for the relay. */
export interface OutboxRow {
  readonly seq: string
  readonly tenant: string
  readonly messageKey: string
  readonly record: StoredRecord
  readonly traceparent: string | null
  /** When the write that stored the record happened (epoch ms). */
  readonly storedAt: number
}

export class MemoryTables extends Context.Service<MemoryTables, {
  /** By record id: the record and its tenant. Replaced whole on each write, so a reader sees one state. */
  records: Map<string, { readonly tenant: string; readonly record: StoredRecord }>
  /** In `seq` order. */
  readonly outbox: Array<OutboxRow>
  seq: number
}>()("strata/records/MemoryTables") {
  static readonly layer: Layer.Layer<MemoryTables> = Layer.sync(MemoryTables, () => ({
    records: new Map(),
    outbox: [],
    seq: 0
  }))
}
