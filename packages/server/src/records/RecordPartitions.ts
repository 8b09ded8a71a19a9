/**
 * The partitions of `records` as PostgreSQL's catalog has them (README: Storage),
 * so that a statement can name the partition it reads instead of the parent table.
 *
 * Why: on PostgreSQL 15 a statement on the partitioned parent costs in proportion
 * to the number of partitions on every execution, however few it reads. A cached
 * generic plan locks every partition when it runs; a custom plan is made afresh;
 * a batched read or an unbounded page sets up every partition in the executor
 * (docs/SIZING.md has the figures). A statement on one partition costs the same
 * at 15 partitions or 1,000.
 *
 * The map is this process's copy of the catalog. Partitions appear (made here, by
 * another replica, or by an operator) and disappear (retention), so each use says
 * how fresh it must be: a page of a stream checks the catalog's fingerprint first
 * (one small index scan of `pg_inherits`), a read by id only when its time falls
 * in no known partition, and a statement that finds its partition gone makes the
 * caller reload and try again (`isMissingPartition`).
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Semaphore } from "effect"
import type { SqlError } from "effect/sql"
import { AppConfig } from "../platform/config/AppConfig.ts"
import { partitionFor } from "./Partitions.ts"

/** A partition of `records`: its table and the instants it holds, [from, to) in ms. */
export interface Partition {
  readonly name: string
  readonly from: number
  readonly to: number
}

/** The catalog as last read: partitions in time order, and what identifies that set. */
interface Snapshot {
  readonly partitions: ReadonlyArray<Partition>
  readonly fingerprint: string
}

const EMPTY: Snapshot = { partitions: [], fingerprint: "" }

export class RecordPartitions extends Context.Service<RecordPartitions, {
  /**
   * Makes the partitions (of PARTITION_INTERVAL) that hold these instants where
   * none does yet; answers the tables made.
   */
  readonly ensure: (instants: ReadonlyArray<number>) => Effect.Effect<ReadonlyArray<string>, SqlError.SqlError>
  /** The partition holding each instant (undefined: none does, even after reading the catalog again). */
  readonly holding: (
    instants: ReadonlyArray<number>
  ) => Effect.Effect<ReadonlyArray<Partition | undefined>, SqlError.SqlError>
  /** The partitions that overlap [from, to), oldest first, as the catalog has them now. */
  readonly overlapping: (from: number, to: number) => Effect.Effect<ReadonlyArray<Partition>, SqlError.SqlError>
  /**
   * The newest `count` partitions that begin at or before `now`, oldest first,
   * from the map as last read (no round trip): where recent records live.
   */
  readonly recent: (count: number, now: number) => ReadonlyArray<Partition>
  /** Reads the catalog again: after partitions were dropped, or a statement found one gone. */
  readonly reload: Effect.Effect<void, SqlError.SqlError>
}>()("strata/records/RecordPartitions") {
  static readonly layerPg: Layer.Layer<RecordPartitions, never, PgClient.PgClient | AppConfig> = Layer.effect(
    RecordPartitions,
    Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      const { partitionInterval } = yield* AppConfig
      let snapshot = EMPTY
      // Readers that find the map stale at once share one reading of the catalog.
      const reading = yield* Semaphore.make(1)

      // Changes with every partition attached or detached: a new partition has a new oid.
      const fingerprint = Effect.map(
        sql<{ readonly n: number; readonly s: string }>`
          SELECT count(*)::int AS n, coalesce(sum(inhrelid::int8), 0)::text AS s
          FROM pg_inherits WHERE inhparent = 'records'::regclass`,
        ([row]) => `${row.n}:${row.s}`
      )
      // The bounds as PostgreSQL prints them, cast back in the same session: any
      // interval the table was ever partitioned by reads back right.
      const readCatalog = (seen: string) =>
        Effect.map(
          sql<{ readonly name: string; readonly from: Date; readonly to: Date }>`
            SELECT c.relname AS name, b[1]::timestamptz AS "from", b[2]::timestamptz AS "to"
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid,
              LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']*)''\\) TO \\(''([^'']*)''\\)') b
            WHERE i.inhparent = 'records'::regclass AND b IS NOT NULL`,
          (rows): Snapshot => ({
            partitions: rows.map((r) => ({ name: r.name, from: r.from.getTime(), to: r.to.getTime() }))
              .toSorted((a, b) => a.from - b.from),
            fingerprint: seen
          })
        )
      /** Reads the catalog unless the map already matches the fingerprint `now` (another reader got there). */
      const readUnlessSeen = (now: string) =>
        Effect.suspend(() =>
          now === snapshot.fingerprint ? Effect.void : Effect.map(readCatalog(now), (read) => {
            snapshot = read
          })
        )
      /**
       * Brings the map up to the catalog's state now: a fingerprint (each caller
       * its own, side by side), and the catalog only if it changed (one reader).
       */
      const refresh = Effect.flatMap(
        fingerprint,
        (now) => now === snapshot.fingerprint ? Effect.void : reading.withPermits(1)(readUnlessSeen(now))
      )
      const reload = reading.withPermits(1)(Effect.gen(function*() {
        snapshot = yield* readCatalog(yield* fingerprint)
      }))

      const find = (ms: number): Partition | undefined => {
        const list = snapshot.partitions
        let lo = 0
        let hi = list.length - 1
        while (lo <= hi) {
          const mid = (lo + hi) >>> 1
          if (list[mid].to <= ms) lo = mid + 1
          else if (list[mid].from > ms) hi = mid - 1
          else return list[mid]
        }
        return undefined
      }

      const holding = (instants: ReadonlyArray<number>) =>
        Effect.suspend(() => {
          const found = instants.map(find)
          return found.includes(undefined)
            ? Effect.map(refresh, () => instants.map(find))
            : Effect.succeed(found)
        })

      const recent = (count: number, now: number) => {
        const list = snapshot.partitions
        let end = list.length
        while (end > 0 && list[end - 1].from > now) end--
        return list.slice(Math.max(0, end - count), end)
      }

      const overlapping = (from: number, to: number) =>
        Effect.map(refresh, () => snapshot.partitions.filter((p) => p.to > from && p.from < to))

      // Made as a table of its own, then attached, in one transaction: ATTACH PARTITION
      // takes a lock on `records` that writes and reads do not wait for, nor it for them,
      // where CREATE TABLE ... PARTITION OF waits for every open transaction on `records`
      // (an atomic bulk body's stays open while its body arrives) and holds up every
      // statement after it meanwhile. Its indexes come from `records` as it attaches.
      const create = (ms: number) => {
        const p = partitionFor(partitionInterval, ms)
        return sql.withTransaction(Effect.andThen(
          sql`CREATE TABLE IF NOT EXISTS ${sql(p.name)} (LIKE records INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`,
          sql`ALTER TABLE records ATTACH PARTITION ${sql(p.name)}
            FOR VALUES FROM (${sql.literal(`'${p.from.toISOString()}'`)}) TO (${
            sql.literal(`'${p.to.toISOString()}'`)
          })`
        )).pipe(
          // Made by another process since we looked (IF NOT EXISTS), or one of
          // other bounds holds the instant (the interval was changed): either way
          // the catalog says where it lives now.
          Effect.catchTag(
            "SqlError",
            (e) => Effect.flatMap(reload, () => find(ms) === undefined ? Effect.fail(e) : Effect.void)
          ),
          Effect.andThen(refresh),
          Effect.as(p.name)
        )
      }
      // The partition last found, where nearly every write lands: two comparisons
      // instead of a search per record.
      let latest: Partition = { name: "", from: 0, to: 0 }
      const ensure = (instants: ReadonlyArray<number>): Effect.Effect<ReadonlyArray<string>, SqlError.SqlError> =>
        Effect.suspend(() => {
          if (snapshot === EMPTY) return Effect.andThen(refresh, ensure(instants))
          const missing = new Map<string, number>()
          for (const ms of instants) {
            if (ms >= latest.from && ms < latest.to) continue
            const p = find(ms)
            if (p !== undefined) latest = p
            else missing.set(partitionFor(partitionInterval, ms).name, ms)
          }
          return missing.size === 0
            ? Effect.succeed([] as ReadonlyArray<string>)
            : Effect.forEach(missing.values(), create)
        })

      return RecordPartitions.of({
        ensure,
        holding,
        recent,
        overlapping,
        reload: Effect.tap(reload, () => Effect.sync(() => latest = { name: "", from: 0, to: 0 }))
      })
    })
  )
}

/** A statement named a partition that is gone (dropped by retention, here or on another replica). */
export const isMissingPartition = (error: SqlError.SqlError): boolean =>
  error.reason._tag === "SqlSyntaxError" && (error.reason.cause as { readonly code?: unknown }).code === "42P01"
