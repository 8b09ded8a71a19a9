/**
 * The tables of the in-memory stores (tests, no database): the records and the
 * outbox that one write fills together, shared by RecordStore.layerMemory and
 * OutboxStore.layerMemory as PostgreSQL's tables are shared by their layerPg.
 */
import type { StoredRecord } from "@strata/domain"
import { Context, Layer } from "effect"
import type { MemoryChange } from "./ChangeLog.ts"
import type { OutboxEvent } from "./OutboxEvent.ts"

export class MemoryTables extends Context.Service<MemoryTables, {
  /** By record id: the record and its tenant. Replaced whole on each write, so a reader sees one state. */
  records: Map<string, { readonly tenant: string; readonly record: StoredRecord }>
  /** In `seq` order, each with its record's `occurredAt` (its partition, for retention). */
  readonly outbox: Array<OutboxEvent & { readonly occurredAt: string }>
  seq: number
  /** The change log in position order; each insert is a transaction numbered by `xid`. */
  readonly changes: Array<MemoryChange>
  xid: number
  /** Retention's marks (the horizon at a time) and the first transaction it kept. */
  readonly changeMarks: Array<{ readonly at: number; readonly xid: bigint }>
  earliestXid: bigint
}>()("strata/records/MemoryTables") {
  static readonly layer: Layer.Layer<MemoryTables> = Layer.sync(MemoryTables, () => ({
    records: new Map(),
    outbox: [],
    seq: 0,
    changes: [],
    xid: 0,
    changeMarks: [],
    earliestXid: 1n
  }))
}
