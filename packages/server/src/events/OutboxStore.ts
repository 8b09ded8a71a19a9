/**
 * The outbox relay's store: the events waiting to be published and the one
 * relay lease. `layerPg` reads them from PostgreSQL's `outbox`, and the record
 * each event carries from `records` unless the caller holds its text;
 * `layerMemory` from MemoryTables, for tests.
 */
import { PgClient } from "@effect/sql-pg"
import type { StoredRecord } from "@strata/domain"
import { Array as Arr, Clock, Context, Duration, Effect, Layer, Option } from "effect"
import type { DbError } from "../platform/sql/DbError.ts"
import { DbPolicy } from "../platform/sql/DbPolicy.ts"
import { MemoryTables } from "../records/MemoryTables.ts"
import { recordText } from "../records/RecordJson.ts"
import { parseStored, withSchemaVersion } from "../records/RecordRows.ts"
import { RecordStore } from "../records/RecordStore.ts"
import type { OutboxEvent } from "./EventBus.ts"

/** A record's text when the caller holds it (HeldRecords.textOf), else undefined. */
export type TextOf = (tenant: string, recordId: string) => string | undefined

export class OutboxStore extends Context.Service<OutboxStore, {
  /**
   * The outbox relay's side (README: Events). A relay publishes only while it holds the
   * one relay lease, so with several replicas one drains at a time and events
   * with one key keep their order. Each call is one short statement: no
   * transaction or connection is held while the events are published.
   *
   * `claim` takes (or renews) the lease for `holder` for `lease` and answers
   * the oldest events (up to `limit`, by `seq`); none when the outbox is empty or
   * another holder's lease has not expired (then it writes nothing). Each event's
   * record text is `textOf`'s when it has it, else read from the record.
   */
  readonly claim: (
    holder: string,
    lease: Duration.Duration,
    limit: number,
    textOf?: TextOf
  ) => Effect.Effect<ReadonlyArray<OutboxEvent>, DbError>
  /**
   * Deletes published events (by `seq`) and renews `holder`'s lease. Answers
   * whether `holder` still holds it; when not, another relay took over (the
   * lease expired) and this one must stop. Deleting is right either way: the bus
   * acknowledged these events.
   */
  readonly ack: (
    holder: string,
    lease: Duration.Duration,
    seqs: Arr.NonEmptyReadonlyArray<string>
  ) => Effect.Effect<boolean, DbError>
  /** Gives the lease up, if `holder` has it, so another relay can take it at once. */
  readonly release: (holder: string) => Effect.Effect<void, DbError>
  /**
   * Reclaims the space of published events. The relay deletes at the outbox's
   * head as fast as records arrive, far faster than autovacuum (at most once a
   * minute) cleans up, and every claim would otherwise step over all the dead
   * entries, which under a steady stream of events made claims slow and costly.
   */
  readonly vacuum: Effect.Effect<void, DbError>
  /** Events waiting in the outbox and the age of the oldest, in seconds. */
  readonly stats: Effect.Effect<{ readonly size: number; readonly oldestAgeSeconds: number }, DbError>
}>()("strata/events/OutboxStore") {
  static readonly layerPg: Layer.Layer<OutboxStore, never, PgClient.PgClient | DbPolicy | RecordStore> = Layer.effect(
    OutboxStore,
    Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      const guard = yield* DbPolicy.callsOf("Db")
      const records = yield* RecordStore

      interface OutboxRow {
        readonly seq: string
        readonly tenant_id: string
        readonly record_id: string
        readonly message_key: string
        /** NULL on rows written before migration 0008: read with the record. */
        readonly stream: string | null
        readonly schema_version: number | null
        /** The record itself, on rows written before migration 0006. */
        readonly payload: string | null
        readonly traceparent: string | null
        readonly created_at: Date
      }
      const eventOf = (
        row: OutboxRow,
        fields: Pick<OutboxEvent, "stream" | "schemaVersion" | "text">
      ): OutboxEvent => ({
        seq: row.seq,
        tenant: row.tenant_id,
        messageKey: row.message_key,
        recordId: row.record_id,
        stream: fields.stream,
        schemaVersion: fields.schemaVersion,
        text: fields.text,
        traceparent: row.traceparent,
        storedAt: row.created_at.getTime()
      })
      const fromRecord = (row: OutboxRow, record: StoredRecord) =>
        eventOf(row, { stream: record.stream, schemaVersion: record.schemaVersion, text: recordText(record) })
      const seqArray = (seqs: ReadonlyArray<string>) => `{${seqs.join(",")}}`

      const leaseUntil = (lease: Duration.Duration) =>
        sql`now() + ${Duration.toMillis(lease)} * interval '1 millisecond'`
      // One statement: the lease is taken (only when there is something to
      // publish, so an idle relay writes nothing) and, if it was, the oldest
      // events are read. A transaction that commits late, after rows with a
      // higher seq were published, is still picked up: the relay always takes the
      // oldest remaining rows and deletes exactly what it published.
      // (ORDER BY `outbox.seq`, the bigint: plain `seq` would be the text column
      // of that name, and "10" sorts before "9".)
      // The records are read in a second statement, and only those whose text
      // the caller does not hold (written by another replica, or long ago): the
      // join cost a record lookup, a jsonb-to-text conversion, a parse and a
      // serialisation for every event, to rebuild text this process still had.
      const claimOutbox = (holder: string, lease: Duration.Duration, limit: number, textOf: TextOf = () => undefined) =>
        Effect.gen(function*() {
          const rows = yield* guard(
            "claimOutbox",
            sql<OutboxRow>`
              WITH lease AS (
                UPDATE outbox_relay_lease SET holder = ${holder}, expires_at = ${leaseUntil(lease)}
                WHERE id = 1 AND (holder = ${holder} OR expires_at < now()) AND EXISTS (SELECT 1 FROM outbox)
                RETURNING id
              )
              SELECT o.seq::text AS seq, o.tenant_id, o.record_id::text AS record_id, o.message_key, o.stream,
                o.schema_version, o.payload::text AS payload, o.traceparent, o.created_at
              FROM outbox o
              WHERE EXISTS (SELECT 1 FROM lease)
              ORDER BY o.seq LIMIT ${limit}`
          )
          const events: Array<OutboxEvent | undefined> = []
          const unread: Array<number> = []
          for (let i = 0; i < rows.length; i++) {
            const row = rows[i]
            const text = row.stream === null ? undefined : textOf(row.tenant_id, row.record_id)
            if (text !== undefined) {
              events.push(eventOf(row, { stream: row.stream!, schemaVersion: row.schema_version, text }))
            } else if (row.payload !== null) {
              events.push(fromRecord(row, withSchemaVersion(parseStored(row.payload))))
            } else {
              events.push(undefined)
              unread.push(i)
            }
          }
          if (unread.length === 0) return events as Array<OutboxEvent>
          // Read as every read by id is, from the partition each id names (RecordPartitions says why).
          const found = yield* records.findByIds(
            unread.map((i) => ({ tenant: rows[i].tenant_id, id: rows[i].record_id }))
          )
          const gone: Array<string> = []
          unread.forEach((i, n) => {
            const record = found[n]
            if (Option.isSome(record)) events[i] = eventOf(rows[i], record.value)
            else gone.push(rows[i].seq)
          })
          // Events whose record retention dropped after they were read: there is
          // nothing to publish, now or later, and left here they would hold up the head.
          if (gone.length > 0) {
            yield* guard("dropOrphanEvents", sql`DELETE FROM outbox WHERE seq = ANY(${seqArray(gone)}::bigint[])`)
          }
          return events.filter((e) => e !== undefined)
        })

      const ackOutbox = (holder: string, lease: Duration.Duration, seqs: Arr.NonEmptyReadonlyArray<string>) =>
        guard(
          "ackOutbox",
          Effect.map(
            sql<{ readonly id: number }>`
              WITH published AS (DELETE FROM outbox WHERE seq = ANY(${seqArray(seqs)}::bigint[]))
              UPDATE outbox_relay_lease SET expires_at = ${leaseUntil(lease)}
              WHERE id = 1 AND holder = ${holder} RETURNING id`,
            (rows) => rows.length > 0
          )
        )

      const releaseOutbox = (holder: string) =>
        guard(
          "releaseOutbox",
          Effect.asVoid(
            sql`UPDATE outbox_relay_lease SET expires_at = '-infinity' WHERE id = 1 AND holder = ${holder}`
          )
        )

      const outboxStats = guard(
        "outboxStats",
        Effect.map(
          sql<{ readonly size: number; readonly age: number | null }>`
            SELECT count(*)::int AS size, extract(epoch FROM now() - min(created_at))::float8 AS age FROM outbox`,
          ([row]) => ({ size: row.size, oldestAgeSeconds: row.age ?? 0 })
        )
      )

      // VACUUM runs outside a transaction: a statement of its own on a pooled connection.
      const vacuum = guard("vacuumOutbox", Effect.asVoid(sql`VACUUM outbox`))

      return OutboxStore.of({ claim: claimOutbox, ack: ackOutbox, release: releaseOutbox, vacuum, stats: outboxStats })
    })
  )

  static readonly layerMemory: Layer.Layer<OutboxStore, never, MemoryTables> = Layer.effect(
    OutboxStore,
    Effect.gen(function*() {
      const tables = yield* MemoryTables
      // The lease expires on the Clock the layer is built with (a TestClock in tests).
      const clock = yield* Clock.clockWith(Effect.succeed)

      // The relay lease, as in the table: a holder and when its lease ends.
      const lease = { holder: "", expiresAt: Number.NEGATIVE_INFINITY }
      const claimOutbox = (holder: string, duration: Duration.Duration, limit: number) =>
        Effect.sync((): ReadonlyArray<OutboxEvent> => {
          const now = clock.currentTimeMillisUnsafe()
          if (tables.outbox.length === 0 || (lease.holder !== holder && lease.expiresAt >= now)) return []
          lease.holder = holder
          lease.expiresAt = now + Duration.toMillis(duration)
          return tables.outbox.slice(0, limit)
        })
      const ackOutbox = (holder: string, duration: Duration.Duration, seqs: Arr.NonEmptyReadonlyArray<string>) =>
        Effect.sync(() => {
          const published = new Set(seqs)
          for (let i = tables.outbox.length - 1; i >= 0; i--) {
            if (published.has(tables.outbox[i].seq)) tables.outbox.splice(i, 1)
          }
          if (lease.holder !== holder) return false
          lease.expiresAt = clock.currentTimeMillisUnsafe() + Duration.toMillis(duration)
          return true
        })
      const releaseOutbox = (holder: string) =>
        Effect.sync(() => {
          if (lease.holder === holder) lease.expiresAt = Number.NEGATIVE_INFINITY
        })

      const outboxStats = Effect.sync(() => ({
        size: tables.outbox.length,
        oldestAgeSeconds: tables.outbox.length === 0
          ? 0
          : (clock.currentTimeMillisUnsafe() - tables.outbox[0].storedAt) / 1000
      }))

      return OutboxStore.of({
        claim: claimOutbox,
        ack: ackOutbox,
        release: releaseOutbox,
        vacuum: Effect.void, // nothing to reclaim in memory
        stats: outboxStats
      })
    })
  )
}
