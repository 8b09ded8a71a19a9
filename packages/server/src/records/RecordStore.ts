/**
 * The records store: writes (each record with its outbox event, in one
 * statement), reads by id and by page, and the time partitions of `records`
 * with retention. `RecordStore.layerPg` runs on PostgreSQL (or the embedded
 * PGlite, which speaks the same SQL); `RecordStore.layerMemory` keeps the rows
 * in MemoryTables with the same behaviour, for tests.
 */
import { PgClient, PgTypes } from "@effect/sql-pg"
import { MAX_FUTURE_MS, type StoredRecord } from "@strata/domain"
import { Array as Arr, Clock, Context, Effect, Layer, Option, Result, Semaphore, Stream } from "effect"
import { SqlError } from "effect/sql"
import { AppConfig } from "../platform/config/AppConfig.ts"
import { type DbError, fromSqlError } from "../platform/sql/DbError.ts"
import { DbPolicy } from "../platform/sql/DbPolicy.ts"
import { readClient } from "../platform/sql/ReadTarget.ts"
import { indexedField, indexedRows, type IndexSpec } from "../schemas/StreamIndexes.ts"
import { type Filter, filterSql, matchesAll, servedBy } from "./Filters.ts"
import { MemoryTables } from "./MemoryTables.ts"
import { nextPartition, partitionFor } from "./Partitions.ts"
import { recordIdTime } from "./RecordId.ts"
import { recordText, rowText } from "./RecordJson.ts"
import { isMissingPartition, type Partition, RecordPartitions } from "./RecordPartitions.ts"
import { COLUMNS, RAW_COLUMNS, type RecordRow, storedOf, toRecord } from "./RecordRows.ts"

/** A validated record with its id, ready to be written. */
export interface RecordToStore {
  readonly tenant: string
  readonly id: string
  readonly stream: string
  readonly key: string | null
  readonly occurredAt: Date
  readonly data: StoredRecord["data"]
  /** `data` in its one byte form (`jsonText`), made once: stored, answered and sized from it. */
  readonly dataText: string
  /** W3C trace context of the request that stores it, carried into the event's headers. */
  readonly traceparent: string | null
  /** The version of the stream's schema `data` was validated against; null: the stream had none. */
  readonly schemaVersion: number | null
}

/**
 * What one insert committed: the records, in the order given, and the
 * transaction that wrote them. The change feed's position of the i-th record
 * (from 0) is (xid, i + 1) (ChangeLog.ts).
 */
export interface Committed {
  readonly records: Arr.NonEmptyReadonlyArray<StoredRecord>
  readonly xid: bigint
}

/** A record as readers name it: its tenant and id. */
export interface RecordKey {
  readonly tenant: string
  readonly id: string
}

/** A row read by id as its reader takes it, with no record object made. */
const foundOf = (row: RecordRow): FoundRecord => ({
  id: row.id,
  stream: row.stream,
  schemaVersion: row.schema_version,
  text: rowText(row)
})

/** Where a key's row is among rows read back: tenant and id (ids read back are lower case). */
const rowKey = (tenant: string, id: string) => `${tenant} ${id.toLowerCase()}`

/** One page of a stream, keyset-paginated on (occurredAt, id). */
export interface PageQuery {
  readonly tenant: string
  readonly stream: string
  readonly key?: string | undefined
  readonly from?: Date | undefined
  readonly to?: Date | undefined
  readonly order: "asc" | "desc"
  readonly limit: number
  /** The last row of the previous page: results start strictly after it. */
  readonly after?: { readonly occurredAt: Date; readonly id: string } | undefined
}

/** A record read by id: its answer text (`recordText`), and the stream and schema version its event names. */
export interface FoundRecord {
  readonly id: string
  readonly stream: string
  readonly schemaVersion: number | null
  readonly text: string
}

/** Where a record sits in a page's order: what a cursor or the next page starts after. */
export const keysetOf = (record: StoredRecord): { readonly occurredAt: Date; readonly id: string } => ({
  occurredAt: new Date(record.occurredAt),
  id: record.id
})

/** `keysetOf` for a row read from `records`, with no record made. */
const keysetOfRow = (row: RecordRow): { readonly occurredAt: Date; readonly id: string } => ({
  occurredAt: new Date(row.occurred_at),
  id: row.id
})

/**
 * A page as its records' answer texts (`recordText`), and where each record sits in
 * the page's order. The texts are made when asked for: an export asks for the next
 * page (which needs only the last keyset) before it writes this one.
 */
export interface TextPage {
  readonly size: number
  readonly texts: () => ReadonlyArray<string>
  readonly keyset: (index: number) => { readonly occurredAt: Date; readonly id: string }
}

/** A filtered page: up to `limit` matching records among at most `budget` rows read in page order. */
export interface FilteredPageQuery extends PageQuery {
  readonly filters: ReadonlyArray<Filter>
  readonly budget: number
  /** The stream's ready declared indexes: filters they serve are written so that PostgreSQL uses them. */
  readonly indexed?: ReadonlyArray<IndexSpec> | undefined
}

export interface FilteredPage {
  readonly records: ReadonlyArray<StoredRecord>
  /** How many rows were read to answer: at most the budget. */
  readonly scanned: number
  /** The last row read when the budget ran out before `limit` records matched: the next page starts after it. */
  readonly stoppedAt: { readonly occurredAt: Date; readonly id: string } | undefined
}

export class RecordStore extends Context.Service<RecordStore, {
  /** Writes the records, one outbox event and one change each, in one transaction: all or none. */
  readonly insert: (records: Arr.NonEmptyReadonlyArray<RecordToStore>) => Effect.Effect<Committed, DbError>
  /**
   * The same for a unit that arrives in chunks (an atomic bulk body as it
   * streams): one transaction, kept open while the chunks arrive, each written as
   * it comes; committed when `chunks` ends, rolled back when it fails or the
   * caller is interrupted. It holds a connection all along, so at most half of the
   * pool's connections are held so at once: a later unit waits for a place before
   * it opens. Undefined on a pool of one connection (the embedded database), which
   * an open transaction would take from every other request.
   */
  readonly insertStream:
    | (<E>(
      chunks: Stream.Stream<Arr.NonEmptyReadonlyArray<RecordToStore>, E>
    ) => Effect.Effect<{ readonly xid: bigint; readonly n: number }, E | DbError>)
    | undefined
  /**
   * Reads records by tenant and id, many in one statement: the answer holds each
   * key's record, in the order of `keys` (none for an id no record has, in that tenant).
   * Every reader answers or publishes the record's text, so that is what is read.
   */
  readonly findByIds: (
    keys: ReadonlyArray<RecordKey>
  ) => Effect.Effect<ReadonlyArray<Option.Option<FoundRecord>>, DbError>
  readonly list: (query: PageQuery) => Effect.Effect<ReadonlyArray<StoredRecord>, DbError>
  /** The same page as each record's answer text, made from the rows with no record object: what pages and exports write. */
  readonly listText: (query: PageQuery) => Effect.Effect<TextPage, DbError>
  /** A page of the records whose data pass every filter, reading at most `budget` rows (README: Filters). */
  readonly listFiltered: (query: FilteredPageQuery) => Effect.Effect<FilteredPage, DbError>
  /**
   * Creates the partitions that hold [now, aheadUntil] ahead of need, and drops
   * whole partitions that end before `dropBefore` (retention). Answers the names.
   */
  readonly maintainPartitions: (options: {
    readonly now: Date
    readonly aheadUntil: Date
    readonly dropBefore: Date | undefined
  }) => Effect.Effect<{ readonly created: ReadonlyArray<string>; readonly dropped: ReadonlyArray<string> }, DbError>
}>()("strata/records/RecordStore") {
  static readonly layerPg: Layer.Layer<
    RecordStore,
    never,
    PgClient.PgClient | AppConfig | DbPolicy | RecordPartitions
  > = Layer.effect(
    RecordStore,
    Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      const config = yield* AppConfig
      const partitions = yield* RecordPartitions
      /** Once more after reading the catalog again, when a statement found a partition dropped since. */
      const retriedOnMissingPartition = <A>(effect: Effect.Effect<A, SqlError.SqlError>) =>
        Effect.catchIf(effect, isMissingPartition, () => Effect.andThen(partitions.reload, effect))
      // "Db.<call>" names each database call's span and metrics, for the records and the outbox alike.
      const guard = yield* DbPolicy.callsOf("Db")

      // One statement for the records and their events: atomic on its own, so a
      // group commit is one round trip, and its text never changes, whatever the
      // number of rows: each column travels as one array parameter (jsonb_to_recordset
      // over one jsonb parameter cost PostgreSQL more).
      // Columns that are never NULL go as JS arrays, which the driver sends in
      // binary (no escaping here, no array parsing there); the nullable ones as
      // array literals, since an array of only NULLs has no type to send.
      // One statement writes up to INSERT_CHUNK records; a larger unit (an atomic bulk
      // body) is several in one transaction, numbering its changes on from the last.
      const insertChunk = (records: ReadonlyArray<RecordToStore>, ingestedAt: Date, offset: number) =>
        Effect.gen(function*() {
          const tenants: Array<string> = []
          const ids: Array<string> = []
          const streams: Array<string> = []
          const times: Array<Date> = []
          const data: Array<string> = []
          for (const r of records) {
            tenants.push(r.tenant)
            ids.push(r.id)
            streams.push(r.stream)
            times.push(r.occurredAt)
            data.push(r.dataText)
          }
          const [{ xid }] = yield* sql<{ readonly xid: string }>`
            WITH input AS (
              SELECT * FROM unnest(${tenants}::text[], ${ids}::uuid[], ${streams}::text[], ${
            arrayLiteral(records, (r) => r.key)
          }::text[], ${times}::timestamptz[], ${data}::jsonb[], ${
            arrayLiteral(records, (r) => r.traceparent)
          }::text[], ${
            arrayLiteral(records, (r) => r.schemaVersion === null ? null : String(r.schemaVersion))
          }::int[]) WITH ORDINALITY AS x(t, i, s, k, o, d, tp, v, n)
            ), stored AS (
              INSERT INTO records (tenant_id, id, stream, key, occurred_at, ingested_at, data, schema_version)
              SELECT t, i, s, k, o, ${ingestedAt}, d, v FROM input
            ), events AS (
              INSERT INTO outbox (tenant_id, record_id, occurred_at, message_key, traceparent, stream, schema_version)
              SELECT t, i, o, t || '/' || s || '/' || coalesce(k, i::text), tp, s, v FROM input ORDER BY n
            ), changes AS (
              INSERT INTO changes (tenant_id, xid, n, record_id, stream)
              SELECT t, pg_current_xact_id(), n + ${offset}::int, i, s FROM input
            )
            SELECT pg_current_xact_id()::text AS xid`
          return BigInt(xid)
        })

      const insert = (records: Arr.NonEmptyReadonlyArray<RecordToStore>) =>
        guard(
          "insert",
          Effect.gen(function*() {
            yield* partitions.ensure(records.map((r) => r.occurredAt.getTime()))
            const ingestedAt = new Date()
            const ingested = ingestedAt.toISOString()
            const xid = records.length <= INSERT_CHUNK
              ? yield* insertChunk(records, ingestedAt, 0)
              : yield* sql.withTransaction(Effect.gen(function*() {
                let last = 0n
                for (let at = 0; at < records.length; at += INSERT_CHUNK) {
                  last = yield* insertChunk(records.slice(at, at + INSERT_CHUNK), ingestedAt, at)
                }
                return last
              }))
            // Made when asked for: a bulk body's commit never asks, and 500,000 records
            // made at once (with their times as text) could outgrow a pod's heap.
            let stored: Arr.NonEmptyReadonlyArray<StoredRecord> | undefined
            return {
              get records() {
                return stored ??= Arr.map(records, (r) => storedOf(r, ingested))
              },
              xid
            }
          }),
          "write",
          // An atomic bulk write is one transaction however many rows it has: DB_TIMEOUT for each ROWS_PER_TIMEOUT.
          Math.ceil(records.length / ROWS_PER_TIMEOUT)
        )

      const poolSize = (sql.config as PgClient.PgPoolConfig).maxConnections ?? DEFAULT_POOL_SIZE
      const openUnits = Semaphore.makeUnsafe(Math.max(1, Math.floor(poolSize / 2)))
      const insertStream = <E>(chunks: Stream.Stream<Arr.NonEmptyReadonlyArray<RecordToStore>, E>) =>
        openUnits.withPermits(1)(Effect.gen(function*() {
          // Partitions are made outside the transaction, on a connection of the pool:
          // made inside, they would lock `records` for every reader until it commits.
          const outside = yield* Effect.context<never>()
          const ingestedAt = new Date()
          let n = 0
          let xid = 0n
          yield* sql.withTransaction(Stream.runForEach(chunks, (chunk) =>
            guard(
              "insertStream",
              Effect.andThen(
                Effect.provideContext(partitions.ensure(chunk.map((r) => r.occurredAt.getTime())), outside),
                insertChunk(chunk, ingestedAt, n)
              ),
              "transaction",
              Math.ceil(chunk.length / ROWS_PER_TIMEOUT)
            ).pipe(Effect.map((last) => {
              xid = last
              n += chunk.length
            })))).pipe(Effect.mapError((e) => SqlError.isSqlError(e) ? fromSqlError(e) : e))
          return { xid, n }
        }))

      // A read names the partitions it reads (RecordPartitions says why): the ids
      // of each partition are looked up through its primary key. A batch within one
      // partition is a prepared statement of that partition. A batch spread over the
      // newest partitions (what recent reads are, with daily partitions) is one
      // prepared statement over a window of the newest 4, 8, 16 or 32 of them, the
      // smallest that holds the batch's, with an id array per partition, empty where
      // the batch has none: its text changes only when a partition begins, and an
      // empty branch costs PostgreSQL a few microseconds where a statement per
      // partition cost a round trip each. Ids in older partitions (reads of old records
      // at random) go in one statement for them, unprepared: its text varies from batch
      // to batch, and each new one would push a statement that is used all the time out
      // of the connection's cache. An id that no record can have is not sent; a row of
      // another tenant is not answered.
      const lookup = (partition: string, n: number) =>
        `SELECT tenant_id, ${COLUMNS} FROM ${quoteIdentifier(partition)} WHERE id = ANY($${n}::uuid[])`
      const windowTexts = new Map<number, { readonly names: string; readonly text: string }>()
      const windowStatement = (window: ReadonlyArray<Partition>) => {
        const names = window.map((p) => p.name).join(" ")
        let known = windowTexts.get(window.length)
        if (known?.names !== names) {
          known = { names, text: window.map((p, i) => lookup(p.name, i + 1)).join(" UNION ALL ") }
          windowTexts.set(window.length, known)
        }
        return known.text
      }
      const findByIds = (keys: ReadonlyArray<RecordKey>) => {
        const wanted: Array<{ readonly key: RecordKey; readonly ms: number }> = []
        for (const key of keys) {
          const ms = recordIdTime(key.id)
          if (ms !== undefined) wanted.push({ key, ms })
        }
        if (wanted.length === 0) return Effect.succeed(keys.map(() => Option.none<FoundRecord>()))
        return guard(
          "findByIds",
          Effect.gen(function*() {
            const db = yield* readClient(sql)
            const homes = yield* partitions.holding(wanted.map((w) => w.ms))
            const ids = new Map<string, Array<string>>()
            wanted.forEach(({ key }, i) => {
              const home = homes[i]
              if (home === undefined) return
              const group = ids.get(home.name)
              if (group === undefined) ids.set(home.name, [key.id])
              else group.push(key.id)
            })
            type Row = RecordRow & { readonly tenant_id: string }
            const statements: Array<Effect.Effect<ReadonlyArray<Row>, SqlError.SqlError>> = []
            if (ids.size === 1) {
              const [[partition, group]] = ids
              statements.push(db.unsafe<Row>(lookup(partition, 1), [group]))
            } else if (ids.size > 1) {
              const newest = partitions.recent(RECENT_WINDOWS[RECENT_WINDOWS.length - 1], Date.now())
              // How far back the batch's partitions reach among the newest, and how many it has there.
              let reach = 0
              let held = 0
              newest.forEach((p, i) => {
                if (!ids.has(p.name)) return
                held++
                reach = Math.max(reach, newest.length - i)
              })
              if (held > 1) {
                const size = RECENT_WINDOWS.find((n) => n >= reach)!
                const window = newest.slice(Math.max(0, newest.length - size))
                statements.push(db.unsafe<Row>(windowStatement(window), window.map((p) => ids.get(p.name) ?? NO_IDS)))
                for (const p of window) ids.delete(p.name)
              }
              const rest = Array.from(ids)
              if (rest.length === 1) statements.push(db.unsafe<Row>(lookup(rest[0][0], 1), [rest[0][1]]))
              else if (rest.length > 1) {
                statements.push(
                  db.unsafe<Row>(
                    rest.map(([partition], i) => lookup(partition, i + 1)).join(" UNION ALL "),
                    rest.map(([, group]) => group)
                  ).unprepared
                )
              }
            }
            const rows = (yield* Effect.all(statements, { concurrency: "unbounded" })).flat()
            const found = new Map(rows.map((row) => [rowKey(row.tenant_id, row.id), row]))
            return keys.map((k) => Option.map(Option.fromNullishOr(found.get(rowKey(k.tenant, k.id))), foundOf))
          }).pipe(retriedOnMissingPartition)
        )
      }

      /** The partitions a page may read, in its order: newest first for `desc`. */
      const pagePartitions = (q: PageQuery) =>
        Effect.map(partitions.overlapping(...pageSpan(q)), (overlapping) => {
          const names = overlapping.map((p) => p.name)
          return q.order === "desc" ? names.toReversed() : names
        })

      // A page walks the partitions the query's time bounds overlap, newest first
      // for `desc`, a few at a time in one statement (more each time while they
      // come back short), and stops when the page is full: page 1 and page 10,000
      // read the same few partitions, however many the table has.
      const pageRows = (q: PageQuery) =>
        Effect.gen(function*() {
          const db = yield* readClient(sql)
          const desc = q.order === "desc"
          const candidates = yield* pagePartitions(q)
          // The statement is written here rather than composed of fragments: a page
          // of a sparse stream sends several statements of up to MAX_WALK branches,
          // and composing them cost the server more than PostgreSQL's work.
          // Every branch reads the same parameters.
          const { params, where } = pageWhere(q)
          const limit = `$${params.length + 1}`
          const direction = desc ? "DESC" : "ASC"
          // Each partition's rows in the index's order, then merged: PostgreSQL
          // reads only as many of each as the page takes from it.
          const branch = (name: string) =>
            `(SELECT ${RAW_COLUMNS} FROM ${quoteIdentifier(name)} WHERE ${where.join(" AND ")}
                ORDER BY occurred_at ${direction}, id ${direction} LIMIT ${limit})`
          const rows: Array<RecordRow> = []
          for (let at = 0, size = FIRST_WALK; at < candidates.length && rows.length < q.limit; size *= WALK_GROWTH) {
            const chunk = candidates.slice(at, at + Math.min(size, MAX_WALK))
            at += chunk.length
            rows.push(
              ...(yield* db.unsafe<RecordRow>(
                `SELECT ${COLUMNS} FROM (${chunk.map(branch).join(" UNION ALL ")}) page
                    ORDER BY page.occurred_at ${direction}, page.id ${direction} LIMIT ${limit}`,
                [...params, q.limit - rows.length]
              ))
            )
          }
          return rows
        }).pipe(retriedOnMissingPartition)
      const list = (q: PageQuery) => guard("list", Effect.map(pageRows(q), (rows) => rows.map(toRecord)))
      const listText = (q: PageQuery) =>
        guard(
          "list",
          Effect.map(pageRows(q), (rows): TextPage => ({
            size: rows.length,
            texts: () => rows.map(rowText),
            keyset: (i) => keysetOfRow(rows[i])
          }))
        )

      // A filtered page walks the same partitions in the same order, but each
      // statement reads at most what is left of the budget, in page order, and
      // answers the rows that pass the filters plus the last row it read (`last`):
      // that row says how many were read and where the next page starts. The
      // window functions only number the rows and look one ahead, so PostgreSQL
      // stops reading as soon as the page is full.
      const listFiltered = (q: FilteredPageQuery) =>
        guard(
          "listFiltered",
          Effect.gen(function*() {
            const db = yield* readClient(sql)
            const candidates = yield* pagePartitions(q)
            const statement = filteredStatement(q)
            const records: Array<StoredRecord> = []
            let scanned = 0
            let stoppedAt: FilteredPage["stoppedAt"] = undefined
            for (
              let at = 0, size = FIRST_WALK;
              at < candidates.length && records.length < q.limit && stoppedAt === undefined;
              size *= WALK_GROWTH
            ) {
              const chunk = candidates.slice(at, at + Math.min(size, MAX_WALK))
              at += chunk.length
              const left = q.budget - scanned
              const rows = yield* db.unsafe<
                RecordRow & { readonly hit: boolean; readonly n: string; readonly last: boolean }
              >(statement.text(chunk), [...statement.params, left, q.limit - records.length + 1]).unprepared
              let read = 0
              for (const row of rows) {
                read = Number(row.n)
                if (row.hit) records.push(toRecord(row))
                if (records.length === q.limit) break
                if (row.last && read === left) stoppedAt = keysetOfRow(row)
              }
              scanned += read
            }
            return { records, scanned, stoppedAt }
          }).pipe(retriedOnMissingPartition)
        )

      const maintainPartitions = (options: { now: Date; aheadUntil: Date; dropBefore: Date | undefined }) =>
        guard(
          "maintainPartitions",
          Effect.gen(function*() {
            const wanted: Array<number> = []
            for (
              let p = partitionFor(config.partitionInterval, options.now.getTime());
              p.from.getTime() <= options.aheadUntil.getTime();
              p = nextPartition(config.partitionInterval, p)
            ) wanted.push(p.from.getTime())
            const created = yield* partitions.ensure(wanted)
            const dropped: Array<string> = []
            if (options.dropBefore !== undefined) {
              const cutoff = options.dropBefore.getTime()
              for (const p of yield* partitions.overlapping(Number.NEGATIVE_INFINITY, cutoff)) {
                if (p.to > cutoff) continue
                // Events read their record when published: those not yet published go with it.
                yield* sql`DELETE FROM outbox WHERE occurred_at >= ${new Date(p.from)} AND occurred_at < ${new Date(
                  p.to
                )}`
                yield* sql`DROP TABLE IF EXISTS ${sql(p.name)}`
                dropped.push(p.name)
              }
              if (dropped.length > 0) yield* partitions.reload
            }
            return { created, dropped }
          })
        )

      return RecordStore.of({
        insert,
        insertStream: poolSize >= 2 ? insertStream : undefined,
        findByIds,
        list,
        listText,
        listFiltered,
        maintainPartitions
      })
    })
  )

  static readonly layerMemory: Layer.Layer<RecordStore, never, MemoryTables> = Layer.effect(
    RecordStore,
    Effect.gen(function*() {
      const tables = yield* MemoryTables
      const clock = yield* Clock.clockWith(Effect.succeed)

      const insert = (records: Arr.NonEmptyReadonlyArray<RecordToStore>) =>
        Effect.sync(() => {
          const ingestedAt = new Date()
          const next = new Map(tables.records)
          const xid = BigInt(++tables.xid)
          const stored = Arr.map(records, (r, i) => {
            const record = storedOf(r, ingestedAt.toISOString())
            next.set(r.id, { tenant: r.tenant, record })
            tables.changes.push({ tenant: r.tenant, stream: r.stream, recordId: r.id, position: { xid, n: i + 1 } })
            tables.outbox.push({
              seq: String(++tables.seq),
              tenant: r.tenant,
              messageKey: `${r.tenant}/${r.stream}/${r.key ?? r.id}`,
              recordId: r.id,
              stream: r.stream,
              schemaVersion: r.schemaVersion,
              text: recordText(record, r.dataText),
              occurredAt: record.occurredAt,
              traceparent: r.traceparent,
              storedAt: clock.currentTimeMillisUnsafe()
            })
            return record
          })
          tables.records = next
          return { records: stored, xid }
        })

      const findByIds = (keys: ReadonlyArray<RecordKey>) =>
        Effect.sync(() =>
          keys.map(({ id, tenant }) => {
            const entry = tables.records.get(id.toLowerCase())
            if (entry === undefined || entry.tenant !== tenant) return Option.none<FoundRecord>()
            const { record } = entry
            return Option.some({
              id: record.id,
              stream: record.stream,
              schemaVersion: record.schemaVersion,
              text: recordText(record)
            })
          })
        )

      const list = (q: PageQuery) =>
        Effect.sync(() => {
          const m = tables.records
          const sign = q.order === "desc" ? -1 : 1
          const after = q.after && { occurredAt: q.after.occurredAt.toISOString(), id: q.after.id.toLowerCase() }
          return Array.from(m.values())
            .filter(({ record: r, tenant }) =>
              tenant === q.tenant && r.stream === q.stream &&
              (q.key === undefined || r.key === q.key) &&
              (q.from === undefined || r.occurredAt >= q.from.toISOString()) &&
              (q.to === undefined || r.occurredAt < q.to.toISOString()) &&
              (after === undefined || sign * compareKeyset(r, after) > 0)
            )
            .map((e) => e.record)
            .toSorted((a, b) => sign * compareKeyset(a, b))
            .slice(0, q.limit)
        })

      const listText = (q: PageQuery) =>
        Effect.map(list(q), (records): TextPage => ({
          size: records.length,
          texts: () => records.map((r) => recordText(r)),
          keyset: (i) => keysetOf(records[i])
        }))

      const listFiltered = (q: FilteredPageQuery) =>
        Effect.map(list({ ...q, limit: q.budget }), (rows): FilteredPage => {
          const records: Array<StoredRecord> = []
          let scanned = 0
          for (const row of rows) {
            scanned += 1
            if (matchesAll(q.filters, row.data)) records.push(row)
            if (records.length === q.limit) break
          }
          const last = rows.at(-1)
          const stoppedAt = records.length < q.limit && rows.length === q.budget && last !== undefined
            ? keysetOf(last)
            : undefined
          return { records, scanned, stoppedAt }
        })

      // In memory there are no partitions to make; retention drops what a
      // partition ending before `dropBefore` would have held.
      const maintainPartitions = (options: { now: Date; aheadUntil: Date; dropBefore: Date | undefined }) =>
        Effect.sync(() => {
          const current = tables.records
          if (options.dropBefore === undefined) return { created: [], dropped: [] }
          const cutoff = options.dropBefore.toISOString()
          const next = new Map(Array.from(current).filter(([, e]) => e.record.occurredAt >= cutoff))
          // Events read their record when published: those not yet published go with it.
          for (let i = tables.outbox.length - 1; i >= 0; i--) {
            if (tables.outbox[i].occurredAt < cutoff) tables.outbox.splice(i, 1)
          }
          tables.records = next
          return { created: [], dropped: current.size === next.size ? [] : ["(memory)"] }
        })

      // All at the end, as one insert: nothing here is shared while the chunks arrive.
      const insertStream = <E>(chunks: Stream.Stream<Arr.NonEmptyReadonlyArray<RecordToStore>, E>) =>
        Effect.flatMap(Stream.runCollect(chunks), (collected) => {
          const all = collected.flat()
          return Arr.isArrayNonEmpty(all)
            ? Effect.map(insert(all), (c) => ({ xid: c.xid, n: all.length }))
            : Effect.succeed({ xid: 0n, n: 0 })
        })

      return RecordStore.of({ insert, insertStream, findByIds, list, listText, listFiltered, maintainPartitions })
    })
  )
}

/**
 * The WHERE of a page's branches, one per partition, and its parameters:
 * tenant and stream, then key, time bounds and the keyset cursor when given.
 * `param` adds one more and answers its placeholder.
 */
const pageWhere = (q: PageQuery) => {
  const params: Array<unknown> = [q.tenant, q.stream]
  const where = ["tenant_id = $1", "stream = $2"]
  const param = (value: unknown) => `$${params.push(value)}`
  if (q.key !== undefined) where.push(`key = ${param(q.key)}`)
  if (q.from !== undefined) where.push(`occurred_at >= ${param(q.from)}`)
  if (q.to !== undefined) where.push(`occurred_at < ${param(q.to)}`)
  if (q.after !== undefined) {
    where.push(
      `(occurred_at, id) ${q.order === "desc" ? "<" : ">"} (${param(q.after.occurredAt)}, ${param(q.after.id)}::uuid)`
    )
  }
  return { param, params, where }
}

/**
 * The span of time a page may read, as [from, to) in ms: the query's bounds,
 * narrowed by its cursor, and never past the newest time a record may have
 * (partitions made ahead of need hold nothing yet).
 */
const pageSpan = (q: PageQuery): readonly [number, number] => {
  let from = q.from?.getTime() ?? Number.NEGATIVE_INFINITY
  let to = Math.min(q.to?.getTime() ?? Number.POSITIVE_INFINITY, Date.now() + LATEST_OCCURRENCE_MS)
  if (q.after !== undefined) {
    if (q.order === "desc") to = Math.min(to, q.after.occurredAt.getTime() + 1)
    else from = Math.max(from, q.after.occurredAt.getTime())
  }
  return [from, to]
}

/**
 * The statement of a filtered page over some partitions (RecordStore.listFiltered
 * says how it reads), and its parameters but the last two: the rows it may read
 * and the rows it answers at most.
 */
export const filteredStatement = (q: FilteredPageQuery) => {
  const desc = q.order === "desc"
  const { param, params, where } = pageWhere(q)
  // A filter on a declared path is also written in each partition's own
  // WHERE, with the field and the rows as the index writes them (constants,
  // from validated names), so the index finds its rows whatever the plan.
  const served = q.filters.filter((f) =>
    (q.indexed ?? []).some((i) => i.path.join("\u0000") === f.path.join("\u0000") && servedBy(f, i.kind))
  )
  if (served.length > 0) {
    where.push(indexedRows(q.tenant, q.stream), filterSql(served, param, (f) => indexedField(f.path)))
  }
  const passes = filterSql(q.filters, param)
  const budget = `$${params.length + 1}`
  const wanted = `$${params.length + 2}`
  const direction = desc ? "DESC" : "ASC"
  const order = `occurred_at ${direction}, id ${direction}`
  const branch = (name: string) =>
    `(SELECT ${RAW_COLUMNS} FROM ${quoteIdentifier(name)} WHERE ${where.join(" AND ")}
      ORDER BY ${order} LIMIT ${budget})`
  return {
    params,
    text: (partitions: ReadonlyArray<string>) =>
      `SELECT ${COLUMNS}, hit, n::text AS n, last FROM (
        SELECT read.*, (${passes}) AS hit, row_number() OVER w AS n, (lead(1) OVER w) IS NULL AS last
        FROM (SELECT * FROM (${partitions.map(branch).join(" UNION ALL ")}) page ORDER BY ${order} LIMIT ${budget}) read
        WINDOW w AS (ORDER BY ${order})
      ) numbered WHERE hit OR last ORDER BY numbered.occurred_at ${direction}, numbered.id ${direction}
      LIMIT ${wanted}`
  }
}

/** How far ahead of now a stored record may have occurred: the accepted future, and an hour for replicas' clocks. */
const LATEST_OCCURRENCE_MS = MAX_FUTURE_MS + 3_600_000
/** Partitions a page reads in its first statement: the newest that may hold records, and the two before it. */
const FIRST_WALK = 3
/**
 * How much wider each next statement of a page's walk is, up to MAX_WALK: a
 * stream or key with few records in many partitions costs a few round trips,
 * not dozens (docs/SIZING.md).
 */
const WALK_GROWTH = 4
/** The most partitions one statement of a page reads: its plan is cached per connection. */
const MAX_WALK = 64

/** The order of GET /data pages: by occurredAt, then id. */
const compareKeyset = (a: { occurredAt: string; id: string }, b: { occurredAt: string; id: string }) =>
  a.occurredAt === b.occurredAt ? (a.id < b.id ? -1 : a.id > b.id ? 1 : 0) : a.occurredAt < b.occurredAt ? -1 : 1

/** The driver's pool size when none is given. */
const DEFAULT_POOL_SIZE = 10

/** The rows one DB_TIMEOUT is for in a write: group commits (WRITE_BATCH_MAX) stay within one; a bulk write gets more. */
const ROWS_PER_TIMEOUT = 10_000

/**
 * The most records one insert statement writes. A larger unit is written in
 * statements of this size in one transaction: PostgreSQL writes them faster than
 * one statement of every row, and the driver never builds one huge message
 * (docs/PERFORMANCE.md, Bulk ingest).
 */
const INSERT_CHUNK = 5000

/**
 * The windows of newest partitions a batch of reads by id reads in one prepared
 * statement, up to a month of daily partitions: each branch costs a read a little,
 * so a batch of the last few days takes a small window (docs/SIZING.md).
 */
const RECENT_WINDOWS = [4, 8, 16, 32] as const

/**
 * An empty id array, typed as the driver types a filled one (text[]): left
 * untyped it would make the window statement a new prepared statement, and a
 * new plan, for every set of partitions a batch leaves empty.
 */
const NO_IDS = Result.getOrThrow(PgTypes.array([], PgTypes.OID.text))

/** A table's name as an SQL identifier. */
const quoteIdentifier = (name: string) => `"${name.replaceAll("\"", "\"\"")}"`

/** One column of a multi-row insert as a PostgreSQL array literal (`{"a",NULL,"b"}`), cast in the statement. */
const arrayLiteral = <A>(rows: ReadonlyArray<A>, f: (row: A, i: number) => string | null): string => {
  let out = "{"
  for (let i = 0; i < rows.length; i++) {
    const value = f(rows[i], i)
    out += (i === 0 ? "" : ",") + (value === null ? "NULL" : `"${value.replace(/[\\"]/g, "\\$&")}"`)
  }
  return out + "}"
}
