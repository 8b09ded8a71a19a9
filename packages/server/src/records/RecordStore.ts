/**
 * The records store (SPEC §5). `Db.layerPg` runs on PostgreSQL (or the embedded
 * PGlite, which speaks the same SQL); `Db.layerMemory` keeps everything in
 * process with the same behaviour, for tests.
 */
import { PgClient } from "@effect/sql-pg"
import type { StoredRecord } from "@strata/domain"
import { Array as Arr, Context, Duration, Effect, Layer, Option, Ref } from "effect"
import type { SqlError } from "effect/sql"
import { randomBytes } from "node:crypto"
import type { OutboxEvent } from "../events/EventBus.ts"
import { AppConfig } from "../platform/config/AppConfig.ts"
import { jsonText, parseExact } from "../platform/json/ExactJson.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import { type CallKind, DbPolicy } from "../platform/sql/DbPolicy.ts"
import { nextPartition, type PartitionBounds, partitionFor, partitionStart } from "../platform/sql/Partitions.ts"
import { recordIdTime } from "./RecordId.ts"

/** A validated record with its id, ready to be written. */
export interface RecordToStore {
  readonly tenant: string
  readonly id: string
  readonly stream: string
  readonly key: string | null
  readonly occurredAt: Date
  readonly data: StoredRecord["data"]
  /** W3C trace context of the request that stores it, carried into the event's headers. */
  readonly traceparent: string | null
  /** The version of the stream's schema `data` was validated against; null: the stream had none. */
  readonly schemaVersion: number | null
}

/** One page of a stream, keyset-paginated on (occurredAt, id). */
export interface ListQuery {
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

export class Db extends Context.Service<Db, {
  /** Writes the records and one outbox event each, in one transaction: all or none. */
  readonly insert: (
    records: Arr.NonEmptyReadonlyArray<RecordToStore>
  ) => Effect.Effect<Arr.NonEmptyReadonlyArray<StoredRecord>, DbError>
  readonly findById: (tenant: string, id: string) => Effect.Effect<Option.Option<StoredRecord>, DbError>
  readonly list: (query: ListQuery) => Effect.Effect<ReadonlyArray<StoredRecord>, DbError>
  /** Succeeds when the database answers. */
  readonly ping: Effect.Effect<void, DbError>
  /**
   * Creates the partitions that hold [now, aheadUntil] ahead of need, and drops
   * whole partitions that end before `dropBefore` (retention). Answers the names.
   */
  readonly maintainPartitions: (options: {
    readonly now: Date
    readonly aheadUntil: Date
    readonly dropBefore: Date | undefined
  }) => Effect.Effect<{ readonly created: ReadonlyArray<string>; readonly dropped: ReadonlyArray<string> }, DbError>
  /**
   * The outbox relay's side (SPEC §4). A relay publishes only while it holds the
   * one relay lease, so with several replicas one drains at a time and events
   * with one key keep their order. Each call is one short statement: no
   * transaction or connection is held while the events are published.
   *
   * `claimOutbox` takes (or renews) the lease for `holder` for `lease` and answers
   * the oldest events (up to `limit`, by `seq`); none when the outbox is empty or
   * another holder's lease has not expired (then it writes nothing).
   */
  readonly claimOutbox: (
    holder: string,
    lease: Duration.Duration,
    limit: number
  ) => Effect.Effect<ReadonlyArray<OutboxEvent>, DbError>
  /**
   * Deletes published events (by `seq`) and renews `holder`'s lease. Answers
   * whether `holder` still holds it; when not, another relay took over (the
   * lease expired) and this one must stop. Deleting is right either way: the bus
   * acknowledged these events.
   */
  readonly ackOutbox: (
    holder: string,
    lease: Duration.Duration,
    seqs: Arr.NonEmptyReadonlyArray<string>
  ) => Effect.Effect<boolean, DbError>
  /** Gives the lease up, if `holder` has it, so another relay can take it at once. */
  readonly releaseOutbox: (holder: string) => Effect.Effect<void, DbError>
  /** Events waiting in the outbox and the age of the oldest, in seconds. */
  readonly outboxStats: Effect.Effect<{ readonly size: number; readonly oldestAgeSeconds: number }, DbError>
  /** A secret shared by every replica on this database, made on first use. */
  readonly sharedSecret: (name: string) => Effect.Effect<string, DbError>
}>()("strata/Db") {
  static readonly layerPg: Layer.Layer<Db, never, PgClient.PgClient | AppConfig | DbPolicy> = Layer.effect(
    Db,
    Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      const config = yield* AppConfig
      const partitions = makePartitionCache(sql, config.partitionInterval)
      const policy = yield* DbPolicy
      const guard = <A>(name: string, effect: Effect.Effect<A, SqlError.SqlError>, kind: CallKind = "idempotent") =>
        policy.run(`Db.${name}`, kind, effect)

      // One statement for the records and their events: atomic on its own, so a
      // group commit is one round trip, and its text never changes, whatever the
      // number of rows: each column travels as one array parameter (jsonb_to_recordset
      // over one jsonb parameter cost PostgreSQL more: measured 1.4x fewer POSTs).
      const insert = (records: Arr.NonEmptyReadonlyArray<RecordToStore>) =>
        guard(
          "insert",
          Effect.gen(function*() {
            yield* partitions.ensure(records.map((r) => r.occurredAt.getTime()))
            const ingestedAt = new Date()
            const stored = Arr.map(records, (r) => storedOf(r, ingestedAt))
            const column = (f: (r: RecordToStore, i: number) => string | null) => arrayLiteral(records, f)
            yield* sql`
              WITH input AS (
                SELECT * FROM unnest(${column((r) => r.tenant)}::text[], ${column((r) => r.id)}::uuid[], ${
              column((r) => r.stream)
            }::text[], ${column((r) => r.key)}::text[], ${column((_, i) => stored[i].occurredAt)}::timestamptz[], ${
              column((r) => jsonText(r.data))
            }::jsonb[], ${column((r) => r.traceparent)}::text[], ${
              column((r) => r.schemaVersion === null ? null : String(r.schemaVersion))
            }::int[]) WITH ORDINALITY AS x(t, i, s, k, o, d, tp, v, n)
              ), stored AS (
                INSERT INTO records (tenant_id, id, stream, key, occurred_at, ingested_at, data, schema_version)
                SELECT t, i, s, k, o, ${ingestedAt}, d, v FROM input
              )
              INSERT INTO outbox (tenant_id, record_id, occurred_at, message_key, traceparent)
              SELECT t, i, o, t || '/' || s || '/' || coalesce(k, i::text), tp FROM input ORDER BY n`
            return stored
          }),
          "write"
        )

      const findById = (tenant: string, id: string) => {
        const ms = recordIdTime(id)
        if (ms === undefined) return Effect.succeed(Option.none())
        return guard(
          "findById",
          Effect.map(
            sql<RecordRow>`SELECT ${sql.literal(COLUMNS)} FROM records
              WHERE id = ${id} AND occurred_at = ${new Date(ms)} AND tenant_id = ${tenant}`,
            (rows) => Option.map(Arr.head(rows), toRecord)
          )
        )
      }

      const list = (q: ListQuery) => {
        const desc = q.order === "desc"
        const clauses = [
          sql`tenant_id = ${q.tenant}`,
          sql`stream = ${q.stream}`,
          ...(q.key !== undefined ? [sql`key = ${q.key}`] : []),
          ...(q.from !== undefined ? [sql`occurred_at >= ${q.from}`] : []),
          ...(q.to !== undefined ? [sql`occurred_at < ${q.to}`] : []),
          ...(q.after !== undefined
            ? [
              desc
                ? sql`(occurred_at, id) < (${q.after.occurredAt}, ${q.after.id}::uuid)`
                : sql`(occurred_at, id) > (${q.after.occurredAt}, ${q.after.id}::uuid)`
            ]
            : [])
        ]
        const direction = sql.literal(desc ? "DESC" : "ASC")
        return guard(
          "list",
          Effect.map(
            sql<RecordRow>`SELECT ${sql.literal(COLUMNS)} FROM records WHERE ${sql.and(clauses)}
              ORDER BY occurred_at ${direction}, id ${direction} LIMIT ${q.limit}`,
            (rows) => rows.map(toRecord)
          )
        )
      }

      const ping = guard("ping", Effect.asVoid(sql`SELECT 1`))

      const sharedSecret = (name: string) =>
        guard(
          "sharedSecret",
          Effect.gen(function*() {
            yield* sql`INSERT INTO strata_secrets (name, value)
              VALUES (${name}, ${randomBytes(32).toString("base64url")}) ON CONFLICT (name) DO NOTHING`
            const rows = yield* sql<{ readonly value: string }>`SELECT value FROM strata_secrets WHERE name = ${name}`
            return rows[0].value
          })
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
              const existing = yield* sql<{ readonly name: string }>`
                SELECT c.relname AS name FROM pg_inherits i
                JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
                WHERE p.relname = 'records'`
              for (const { name } of existing) {
                const start = partitionStart(name)
                if (start === undefined) continue
                const end = nextPartition(
                  config.partitionInterval,
                  partitionFor(config.partitionInterval, start.getTime())
                )
                if (end.from.getTime() <= options.dropBefore.getTime()) {
                  // Events read their record when published: those not yet published go with it.
                  yield* sql`DELETE FROM outbox WHERE occurred_at >= ${start} AND occurred_at < ${end.from}`
                  yield* sql`DROP TABLE IF EXISTS ${sql(name)}`
                  partitions.known.delete(name)
                  dropped.push(name)
                }
              }
            }
            return { created, dropped }
          })
        )

      interface OutboxRow extends Partial<RecordRow> {
        readonly seq: string
        readonly tenant_id: string
        readonly message_key: string
        readonly payload: string | null
        readonly traceparent: string | null
        readonly created_at: Date
      }
      const leaseUntil = (lease: Duration.Duration) =>
        sql`now() + ${Duration.toMillis(lease)} * interval '1 millisecond'`
      // One statement: the lease is taken (only when there is something to
      // publish, so an idle relay writes nothing) and, if it was, the oldest
      // events are read. A transaction that commits late, after rows with a
      // higher seq were published, is still picked up: the relay always takes the
      // oldest remaining rows and deletes exactly what it published.
      // (ORDER BY `outbox.seq`, the bigint: plain `seq` would be the text column
      // of that name, and "10" sorts before "9".)
      const claimOutbox = (holder: string, lease: Duration.Duration, limit: number) =>
        guard(
          "claimOutbox",
          Effect.map(
            sql<OutboxRow>`
              WITH lease AS (
                UPDATE outbox_relay_lease SET holder = ${holder}, expires_at = ${leaseUntil(lease)}
                WHERE id = 1 AND (holder = ${holder} OR expires_at < now()) AND EXISTS (SELECT 1 FROM outbox)
                RETURNING id
              )
              SELECT o.seq::text AS seq, o.tenant_id, o.message_key, o.payload::text AS payload, o.traceparent,
                o.created_at, r.id::text AS id, r.stream, r.key, r.occurred_at, r.ingested_at, r.data::text AS data,
                r.schema_version
              FROM outbox o
              LEFT JOIN records r ON r.id = o.record_id AND r.occurred_at = o.occurred_at
              WHERE EXISTS (SELECT 1 FROM lease) AND (o.payload IS NOT NULL OR r.id IS NOT NULL)
              ORDER BY o.seq LIMIT ${limit}`,
            (rows) =>
              rows.map((r): OutboxEvent => ({
                seq: r.seq,
                tenant: r.tenant_id,
                messageKey: r.message_key,
                record: r.payload !== null
                  ? withSchemaVersion(parseStored(r.payload))
                  : toRecord(r as RecordRow),
                traceparent: r.traceparent,
                storedAt: r.created_at.getTime()
              }))
          )
        )

      const ackOutbox = (holder: string, lease: Duration.Duration, seqs: Arr.NonEmptyReadonlyArray<string>) =>
        guard(
          "ackOutbox",
          Effect.map(
            sql<{ readonly id: number }>`
              WITH published AS (DELETE FROM outbox WHERE seq IN ${sql.in(seqs)})
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

      return Db.of({
        insert,
        findById,
        list,
        ping,
        sharedSecret,
        maintainPartitions,
        claimOutbox,
        ackOutbox,
        releaseOutbox,
        outboxStats
      })
    })
  )

  static readonly layerMemory: Layer.Layer<Db> = Layer.effect(
    Db,
    Effect.gen(function*() {
      const store = yield* Ref.make(new Map<string, { readonly tenant: string; readonly record: StoredRecord }>())
      const outbox: Array<OutboxEvent> = []
      let seq = 0

      const insert = (records: Arr.NonEmptyReadonlyArray<RecordToStore>) =>
        Ref.modify(store, (current) => {
          const ingestedAt = new Date()
          const next = new Map(current)
          const stored = Arr.map(records, (r) => {
            const record = storedOf(r, ingestedAt)
            next.set(r.id, { tenant: r.tenant, record })
            outbox.push({
              seq: String(++seq),
              tenant: r.tenant,
              messageKey: `${r.tenant}/${r.stream}/${r.key ?? r.id}`,
              record,
              traceparent: r.traceparent,
              storedAt: Date.now()
            })
            return record
          })
          return [stored, next]
        })

      const findById = (tenant: string, id: string) =>
        Effect.map(Ref.get(store), (m) => {
          const entry = m.get(id.toLowerCase())
          return entry !== undefined && entry.tenant === tenant ? Option.some(entry.record) : Option.none()
        })

      const list = (q: ListQuery) =>
        Effect.map(Ref.get(store), (m) => {
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

      const secrets = new Map<string, string>()
      const sharedSecret = (name: string) =>
        Effect.sync(() => {
          if (!secrets.has(name)) secrets.set(name, randomBytes(32).toString("base64url"))
          return secrets.get(name)!
        })

      // In memory there are no partitions to make; retention drops what a
      // partition ending before `dropBefore` would have held.
      const maintainPartitions = (options: { now: Date; aheadUntil: Date; dropBefore: Date | undefined }) =>
        Ref.modify(store, (current) => {
          if (options.dropBefore === undefined) return [{ created: [], dropped: [] }, current]
          const cutoff = options.dropBefore.toISOString()
          const next = new Map(Array.from(current).filter(([, e]) => e.record.occurredAt >= cutoff))
          return [{ created: [], dropped: current.size === next.size ? [] : ["(memory)"] }, next]
        })

      // The relay lease, as in the table: a holder and when its lease ends.
      const lease = { holder: "", expiresAt: Number.NEGATIVE_INFINITY }
      const claimOutbox = (holder: string, duration: Duration.Duration, limit: number) =>
        Effect.sync((): ReadonlyArray<OutboxEvent> => {
          const now = Date.now()
          if (outbox.length === 0 || (lease.holder !== holder && lease.expiresAt >= now)) return []
          lease.holder = holder
          lease.expiresAt = now + Duration.toMillis(duration)
          return outbox.slice(0, limit)
        })
      const ackOutbox = (holder: string, duration: Duration.Duration, seqs: Arr.NonEmptyReadonlyArray<string>) =>
        Effect.sync(() => {
          const published = new Set(seqs)
          for (let i = outbox.length - 1; i >= 0; i--) if (published.has(outbox[i].seq)) outbox.splice(i, 1)
          if (lease.holder !== holder) return false
          lease.expiresAt = Date.now() + Duration.toMillis(duration)
          return true
        })
      const releaseOutbox = (holder: string) =>
        Effect.sync(() => {
          if (lease.holder === holder) lease.expiresAt = Number.NEGATIVE_INFINITY
        })

      const outboxStats = Effect.sync(() => ({
        size: outbox.length,
        oldestAgeSeconds: outbox.length === 0 ? 0 : (Date.now() - outbox[0].storedAt) / 1000
      }))

      return Db.of({
        insert,
        findById,
        list,
        ping: Effect.void,
        sharedSecret,
        maintainPartitions,
        claimOutbox,
        ackOutbox,
        releaseOutbox,
        outboxStats
      })
    })
  )
}

/** The order of GET /data pages: by occurredAt, then id. */
const compareKeyset = (a: { occurredAt: string; id: string }, b: { occurredAt: string; id: string }) =>
  a.occurredAt === b.occurredAt ? (a.id < b.id ? -1 : a.id > b.id ? 1 : 0) : a.occurredAt < b.occurredAt ? -1 : 1

// `data` as text: the driver's JSON.parse would round long numbers.
const COLUMNS = "id::text AS id, stream, key, occurred_at, ingested_at, data::text AS data, schema_version"

interface RecordRow {
  readonly id: string
  readonly stream: string
  readonly key: string | null
  readonly occurred_at: Date
  readonly ingested_at: Date
  readonly data: string
  readonly schema_version: number | null
}

/** One column of a multi-row insert as a PostgreSQL array literal (`{"a",NULL,"b"}`), cast in the statement. */
const arrayLiteral = <A>(rows: ReadonlyArray<A>, f: (row: A, i: number) => string | null): string => {
  let out = "{"
  for (let i = 0; i < rows.length; i++) {
    const value = f(rows[i], i)
    out += (i === 0 ? "" : ",") + (value === null ? "NULL" : `"${value.replace(/[\\"]/g, "\\$&")}"`)
  }
  return out + "}"
}

/** JSON that PostgreSQL wrote: every number fits `parseExact`. */
const parseStored = <A>(text: string): A => {
  const parsed = parseExact(text)
  if (parsed._tag === "Inexact") throw new Error(`stored JSON holds an unreadable number at ${parsed.path.join(".")}`)
  return parsed.value as A
}

/** An outbox payload written before schemas existed has no schemaVersion: null, as for its record. */
const withSchemaVersion = (record: Omit<StoredRecord, "schemaVersion"> & { schemaVersion?: number | null }) => ({
  ...record,
  schemaVersion: record.schemaVersion ?? null
})

const toRecord = (row: RecordRow): StoredRecord => ({
  id: row.id,
  stream: row.stream,
  key: row.key,
  occurredAt: row.occurred_at.toISOString(),
  ingestedAt: row.ingested_at.toISOString(),
  data: parseStored(row.data),
  schemaVersion: row.schema_version ?? null
})

const storedOf = (r: RecordToStore, ingestedAt: Date): StoredRecord => ({
  id: r.id,
  stream: r.stream,
  key: r.key,
  occurredAt: r.occurredAt.toISOString(),
  ingestedAt: ingestedAt.toISOString(),
  data: r.data,
  schemaVersion: r.schemaVersion
})

/**
 * Knows which partitions exist and creates missing ones on first need
 * (a backfill into 2019 works). Creation races between replicas are harmless.
 */
const makePartitionCache = (
  sql: PgClient.PgClient,
  interval: AppConfig["Service"]["partitionInterval"]
) => {
  const known = new Set<string>()
  const create = (p: PartitionBounds) =>
    sql`CREATE TABLE IF NOT EXISTS ${sql(p.name)} PARTITION OF records
        FOR VALUES FROM (${sql.literal(`'${p.from.toISOString()}'`)}) TO (${sql.literal(`'${p.to.toISOString()}'`)})`
      .pipe(
        // Another process created it between our check and our CREATE.
        Effect.catchTag("SqlError", (e) =>
          partitionExists(sql, p.name).pipe(
            Effect.flatMap((exists) => exists ? Effect.void : Effect.fail(e))
          )),
        Effect.tap(() => Effect.sync(() => known.add(p.name)))
      )
  const ensure = (instants: ReadonlyArray<number>) => {
    const missing = new Map<string, PartitionBounds>()
    for (const ms of instants) {
      const p = partitionFor(interval, ms)
      if (!known.has(p.name)) missing.set(p.name, p)
    }
    return missing.size === 0
      ? Effect.succeed([] as ReadonlyArray<string>)
      : Effect.forEach(missing.values(), (p) => Effect.as(create(p), p.name))
  }
  return { ensure, known }
}

const partitionExists = (sql: PgClient.PgClient, name: string) =>
  Effect.map(
    sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM pg_class WHERE relname = ${name}`,
    (rows) => rows[0].n > 0
  )
