/**
 * The change feed's log (README: Change feed): one row per stored record,
 * written by RecordStore.insert in the record's own statement, in the table
 * `changes` keyed on (tenant, xid, n): the writing transaction's id
 * (`pg_current_xact_id()`, 64 bits, never wraps) and the record's place in
 * that statement.
 *
 * Why the transaction id and not a sequence: rows become visible in commit
 * order, not in the order their ids or sequence numbers were taken, so a reader
 * that asks for "everything after the last one I saw" skips a transaction that
 * took its number early and committed late. Here a reader serves only the rows
 * of transactions older than every transaction still running, the snapshot's
 * `xmin` (the horizon): those are all finished, so no row can ever appear
 * below it. Ordered by (xid, n), what was served once is final.
 *
 * The log is its own table, not a column of `records`: a tail reads the end of
 * one index, whatever the number of `records` partitions, and each record is
 * then read by id, whose UUIDv7 prefix names its partition (issue 24).
 * Retention deletes old rows (FEED_RETENTION); `earliest` says where the kept
 * log starts, and a position before it is expired.
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer } from "effect"
import { createHash, randomBytes } from "node:crypto"
import type { DbError } from "../platform/sql/DbError.ts"
import { DbPolicy } from "../platform/sql/DbPolicy.ts"
import { readClient } from "../platform/sql/ReadTarget.ts"
import { MemoryTables } from "./MemoryTables.ts"

/**
 * A place in a tenant's feed: every change up to (xid, n) included was served.
 * `n` counts from 1 within a transaction, so (xid, 0) is "every change of
 * transactions before xid": the horizon as a position.
 */
export interface FeedPosition {
  readonly xid: bigint
  readonly n: number
}

export const comparePositions = (a: FeedPosition, b: FeedPosition): number =>
  a.xid < b.xid ? -1 : a.xid > b.xid ? 1 : a.n - b.n

export const laterOf = (a: FeedPosition, b: FeedPosition): FeedPosition => comparePositions(a, b) >= 0 ? a : b

/** One change as the log has it: its position and the record it names. */
export interface ChangeRow {
  readonly position: FeedPosition
  readonly recordId: string
}

export interface ChangeQuery {
  readonly tenant: string
  /** Only these streams (at most MAX_STREAMS); every stream when undefined. */
  readonly streams: ReadonlyArray<string> | undefined
  readonly after: FeedPosition
  readonly limit: number
}

/** What a read saw besides the rows: the horizon, and the next transaction id (nothing above it exists yet). */
export interface Horizon {
  /** Every transaction below it has finished: the log is final below (horizon, 0). */
  readonly horizon: bigint
  /** The next transaction id to be assigned: no position of this database lies beyond (next, 0). */
  readonly next: bigint
}

/** Which of the watched tenants' streams changed in [since, horizon). */
export interface Activity extends Horizon {
  readonly touched: ReadonlyArray<{ readonly tenant: string; readonly stream: string }>
}

/** The most streams one feed may name: each is a branch of the statement. */
export const MAX_STREAMS = 16

export class ChangeLog extends Context.Service<ChangeLog, {
  /**
   * The database's epoch: a positions from another epoch (a restore, a new
   * primary after a failover: another system identifier or timeline) cannot be
   * trusted to name the same changes here.
   */
  readonly epoch: Effect.Effect<string, DbError>
  /** Up to `limit` changes after `after` below the horizon, in (xid, n) order, and that horizon. */
  readonly read: (query: ChangeQuery) => Effect.Effect<Horizon & { readonly rows: ReadonlyArray<ChangeRow> }, DbError>
  /** The horizon alone: where a reader starting "now" starts. */
  readonly horizon: Effect.Effect<Horizon, DbError>
  /** The streams of `tenants` with changes in [since, horizon): what the feed's wake-ups ask. */
  readonly activity: (tenants: ReadonlyArray<string>, since: bigint) => Effect.Effect<Activity, DbError>
  /** The first transaction id retention kept: positions before (earliest, 0) are expired. */
  readonly earliest: Effect.Effect<bigint, DbError>
  /**
   * Notes the horizon with the time (a mark), and deletes the changes of
   * transactions older than the newest mark made before `before`, a slice at a
   * time. Answers how many it deleted.
   */
  readonly expire: (before: Date) => Effect.Effect<number, DbError>
}>()("strata/records/ChangeLog") {
  static readonly layerPg: Layer.Layer<ChangeLog, never, PgClient.PgClient | DbPolicy> = Layer.effect(
    ChangeLog,
    Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      const guard = yield* DbPolicy.callsOf("ChangeLog")

      const epoch = guard(
        "epoch",
        Effect.map(
          // The system identifier changes with a new cluster (a dump restored, a new
          // database); the timeline with every promotion and every archive recovery
          // (a failover, a point-in-time restore). The WAL file name's first 8 digits
          // are the timeline the primary writes on now.
          sql<{ readonly id: string; readonly wal: string }>`
            SELECT (SELECT system_identifier FROM pg_control_system())::text AS id,
                   pg_walfile_name(pg_current_wal_lsn()) AS wal`,
          ([row]) => epochOf(`${row.id}/${row.wal.slice(0, 8)}`)
        )
      )

      const horizonOf = (row: { readonly horizon: string; readonly next: string }): Horizon => ({
        horizon: BigInt(row.horizon),
        next: BigInt(row.next)
      })

      // The horizon and the rows come from one statement, so from one snapshot.
      const branch = (stream: string | undefined, at: number) =>
        `(SELECT xid, n, record_id FROM changes
           WHERE tenant_id = $1${stream === undefined ? "" : ` AND stream = $${at}`}
             AND (xid, n) > ($2::xid8, $3::int) AND xid < h.x
           ORDER BY xid, n LIMIT $4)`
      const read = (q: ChangeQuery) =>
        guard(
          "read",
          Effect.gen(function*() {
            const streams = q.streams ?? []
            const inner = q.streams === undefined
              ? branch(undefined, 0)
              : `SELECT * FROM (${streams.map((s, i) => branch(s, i + 5)).join(" UNION ALL ")}) s
                 ORDER BY xid, n LIMIT $4`
            const rows = yield* (yield* readClient(sql)).unsafe<{
              readonly horizon: string
              readonly next: string
              readonly xid: string | null
              readonly n: number | null
              readonly record_id: string | null
            }>(
              `WITH h AS (SELECT pg_snapshot_xmin(s) AS x, pg_snapshot_xmax(s) AS nx FROM pg_current_snapshot() s)
               SELECT h.x::text AS horizon, h.nx::text AS next, c.xid::text AS xid, c.n, c.record_id::text AS record_id
                 FROM h LEFT JOIN LATERAL (${inner}) c ON true
                ORDER BY c.xid, c.n`,
              [q.tenant, q.after.xid.toString(), q.after.n, q.limit, ...streams]
            )
            const changes: Array<ChangeRow> = []
            for (const row of rows) {
              if (row.xid === null) continue
              changes.push({ position: { xid: BigInt(row.xid), n: row.n! }, recordId: row.record_id! })
            }
            return { ...horizonOf(rows[0]), rows: changes }
          })
        )

      // On the node the fiber reads from (ReadTarget): a page's horizon is its node's.
      const horizon = guard(
        "horizon",
        Effect.flatMap(readClient(sql), (db) =>
          Effect.map(
            db<{ readonly horizon: string; readonly next: string }>`
              SELECT pg_snapshot_xmin(s)::text AS horizon, pg_snapshot_xmax(s)::text AS next FROM pg_current_snapshot() s`,
            ([row]) => horizonOf(row)
          ))
      )

      const activity = (tenants: ReadonlyArray<string>, since: bigint) =>
        guard(
          "activity",
          Effect.map(
            sql<{ readonly horizon: string; readonly next: string; tenant_id: string | null; stream: string | null }>`
              WITH h AS (SELECT pg_snapshot_xmin(s) AS x, pg_snapshot_xmax(s) AS nx FROM pg_current_snapshot() s)
              SELECT h.x::text AS horizon, h.nx::text AS next, c.tenant_id, c.stream
                FROM h LEFT JOIN LATERAL (
                  SELECT DISTINCT tenant_id, stream FROM changes
                   WHERE tenant_id = ANY(${tenants}::text[]) AND xid >= ${since.toString()}::xid8 AND xid < h.x
                ) c ON true`,
            (rows) => ({
              ...horizonOf(rows[0]),
              touched: rows.flatMap((r) => r.tenant_id === null ? [] : [{ tenant: r.tenant_id, stream: r.stream! }])
            })
          )
        )

      const earliest = guard(
        "earliest",
        Effect.map(
          sql<{ readonly earliest: string }>`SELECT earliest::text AS earliest FROM change_retention WHERE id = 1`,
          ([row]) => BigInt(row.earliest)
        )
      )

      // Short statements, so that retention never becomes the long transaction
      // that holds every feed's horizon back.
      const expire = (before: Date) =>
        guard(
          "expire",
          Effect.gen(function*() {
            yield* sql`INSERT INTO change_marks (at, xid)
              SELECT now(), pg_snapshot_xmin(pg_current_snapshot()) ON CONFLICT (at) DO NOTHING`
            const [cut] = yield* sql<{ readonly xid: string | null }>`
              SELECT max(xid)::text AS xid FROM change_marks WHERE at <= ${before}`
            if (cut?.xid == null) return 0
            // Positions before the cut are expired from now on, before their rows go.
            yield* sql`UPDATE change_retention SET earliest = greatest(earliest, ${cut.xid}::xid8) WHERE id = 1`
            yield* sql`DELETE FROM change_marks WHERE xid < ${cut.xid}::xid8`
            // Per tenant, through the primary key: the tenants table lists every tenant a key ever had.
            const tenants = yield* sql<{ readonly tenant: string }>`SELECT name AS tenant FROM tenants`
            let deleted = 0
            for (const { tenant } of tenants) {
              for (;;) {
                const gone = yield* sql<{ readonly n: number }>`
                  WITH doomed AS (
                    SELECT ctid FROM changes WHERE tenant_id = ${tenant} AND xid < ${cut.xid}::xid8 LIMIT 5000
                  ), removed AS (DELETE FROM changes WHERE ctid IN (SELECT ctid FROM doomed) RETURNING 1)
                  SELECT count(*)::int AS n FROM removed`
                deleted += gone[0].n
                if (gone[0].n < 5000) break
              }
            }
            return deleted
          }),
          "write"
        )

      return ChangeLog.of({ epoch, read, horizon, activity, earliest, expire })
    })
  )

  /**
   * In memory: each insert is a transaction of its own, numbered in order and
   * committed at once, so the horizon is always the next number.
   */
  static readonly layerMemory: Layer.Layer<ChangeLog, never, MemoryTables> = Layer.effect(
    ChangeLog,
    Effect.gen(function*() {
      const tables = yield* MemoryTables
      const epoch = epochOf(`memory/${randomBytes(8).toString("hex")}`)
      const horizonNow = (): Horizon => ({ horizon: BigInt(tables.xid + 1), next: BigInt(tables.xid + 1) })
      const after = (p: FeedPosition) => (c: MemoryChange) => comparePositions(c.position, p) > 0

      return ChangeLog.of({
        epoch: Effect.succeed(epoch),
        read: (q) =>
          Effect.sync(() => {
            const rows = tables.changes
              .filter((c) =>
                c.tenant === q.tenant && (q.streams === undefined || q.streams.includes(c.stream)) && after(q.after)(c)
              )
              .slice(0, q.limit)
              .map((c) => ({ position: c.position, recordId: c.recordId }))
            return { ...horizonNow(), rows }
          }),
        horizon: Effect.sync(horizonNow),
        activity: (tenants, since) =>
          Effect.sync(() => {
            const seen = new Map<string, { tenant: string; stream: string }>()
            for (const c of tables.changes) {
              if (c.position.xid >= since && tenants.includes(c.tenant)) {
                seen.set(`${c.tenant}\u0000${c.stream}`, { tenant: c.tenant, stream: c.stream })
              }
            }
            return { ...horizonNow(), touched: Array.from(seen.values()) }
          }),
        earliest: Effect.sync(() => tables.earliestXid),
        expire: (before) =>
          Effect.sync(() => {
            tables.changeMarks.push({ at: Date.now(), xid: BigInt(tables.xid + 1) })
            const cuts = tables.changeMarks.filter((m) => m.at <= before.getTime())
            if (cuts.length === 0) return 0
            const cut = cuts[cuts.length - 1].xid
            if (cut > tables.earliestXid) tables.earliestXid = cut
            const kept = tables.changes.filter((c) => c.position.xid >= cut)
            const deleted = tables.changes.length - kept.length
            tables.changes.splice(0, tables.changes.length, ...kept)
            return deleted
          })
      })
    })
  )
}

/** A change as the memory tables keep it. */
export interface MemoryChange {
  readonly tenant: string
  readonly stream: string
  readonly recordId: string
  readonly position: FeedPosition
}

/** A short, stable name of what identifies a database's history. */
const epochOf = (identity: string) => createHash("sha256").update(identity).digest("base64url").slice(0, 8)
