/**
 * `records` with 400 daily partitions (README: Storage, docs/SIZING.md): a read by
 * id and a page of a stream touch the partitions they read, not every partition,
 * and they stay right when other processes add or drop partitions.
 *
 * "Touch" is measured by the locks a statement leaves in its transaction: on
 * PostgreSQL 15 that is what a statement on the parent table pays for every
 * partition (and what took 462 partitions to 49 uncached reads per second).
 */
import { PgClient } from "@effect/sql-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { freshDatabase, postgresAvailable } from "@strata/testing"
import { Array as Arr, Duration, Effect, Layer, ManagedRuntime, Option, Redacted } from "effect"
import { layerStorage } from "../src/App.ts"
import { AppConfig, type ConfigServices } from "../src/platform/config/AppConfig.ts"
import { runMigrations } from "../src/platform/sql/Migrations.ts"
import { makeRecordId } from "../src/records/RecordId.ts"
import { type PageQuery, RecordStore, type RecordToStore } from "../src/records/RecordStore.ts"

type Services = RecordStore | PgClient.PgClient | ConfigServices

const available = await postgresAvailable()
const suite = available ? describe : describe.skip

const DAY_MS = 86_400_000
const DAYS = 400
/** Midnight UTC, DAYS - 1 days ago: day 0 of the table. */
const firstDay = Math.floor(Date.now() / DAY_MS) * DAY_MS - (DAYS - 1) * DAY_MS

const partitionOf = (ms: number) => `records_${new Date(ms).toISOString().slice(0, 10).replaceAll("-", "")}`

const record = (ms: number, stream: string, key: string | null = null): RecordToStore => ({
  tenant: "default",
  id: makeRecordId(ms),
  stream,
  key,
  occurredAt: new Date(ms),
  data: { at: ms },
  dataText: JSON.stringify({ at: ms }),
  traceparent: null,
  schemaVersion: null
})

suite("400 daily partitions on PostgreSQL", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let runtime: ManagedRuntime.ManagedRuntime<Services, unknown>
  const run = <A, E>(effect: Effect.Effect<A, E, Services>) => runtime.runPromise(effect)
  const store = <A, E>(f: (store: RecordStore["Service"]) => Effect.Effect<A, E, Services>) =>
    run(Effect.flatMap(RecordStore, f))
  /** Writes records through another connection than the store's, as another replica would. */
  const direct = (statement: string) => run(Effect.flatMap(PgClient.PgClient, (sql) => sql.unsafe(statement)))

  /** The partitions of `records` the effect leaves locked in its transaction. */
  const partitionsLockedBy = <A, E>(effect: Effect.Effect<A, E, Services>) =>
    run(Effect.flatMap(PgClient.PgClient, (sql) =>
      sql.withTransaction(Effect.gen(function*() {
        const result = yield* effect
        const locked = yield* sql<{ readonly name: string }>`
          SELECT c.relname AS name FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
          WHERE l.pid = pg_backend_pid() AND c.relkind = 'r' AND c.relname LIKE 'records\\_%'`
        return { result, locked: locked.map((r) => r.name).toSorted() }
      }))))

  // One record a day in stream "daily"; stream "sparse" has three, far apart.
  const daily: Array<RecordToStore> = []
  const sparse = [
    record(firstDay + 5 * DAY_MS, "sparse"),
    record(firstDay + 200 * DAY_MS, "sparse", "k"),
    record(firstDay + 390 * DAY_MS, "sparse", "k")
  ]

  beforeAll(async () => {
    db = await freshDatabase()
    runtime = ManagedRuntime.make(
      layerStorage.pipe(
        Layer.provideMerge(Layer.effectDiscard(runMigrations)),
        Layer.provideMerge(PgClient.layer({ url: Redacted.make(db.url), maxConnections: 4 })),
        // A setup insert makes a hundred daily partitions: more than DB_TIMEOUT's 5 s on a loaded machine.
        Layer.provideMerge(AppConfig.layerWith({ partitionInterval: "day", dbTimeout: Duration.seconds(60) }))
      )
    )
    for (let day = 0; day < DAYS; day++) daily.push(record(firstDay + day * DAY_MS + 3_600_000, "daily"))
    for (const chunk of Arr.chunksOf([...daily, ...sparse], 100)) {
      await store((s) => s.insert(chunk as Arr.NonEmptyReadonlyArray<RecordToStore>))
    }
  }, 120_000)

  afterAll(async () => {
    await runtime?.dispose()
    await db?.drop()
  })

  it("has a partition per day", async () => {
    const [row] = await direct(
      "SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'records'::regclass"
    ) as Array<{ n: number }>
    expect(row.n).toBeGreaterThanOrEqual(DAYS)
  })

  it("reads a record by id from its own partition only", async () => {
    const target = daily[123]
    const { locked, result } = await partitionsLockedBy(
      Effect.flatMap(RecordStore, (s) => s.findByIds([{ tenant: "default", id: target.id }]))
    )
    expect(Option.getOrThrow(result[0]).id).toBe(target.id)
    expect(locked).toEqual([partitionOf(target.occurredAt.getTime())])
  })

  it("reads a batch of ids over many partitions, each from its own, each answered its own", async () => {
    const picks = [daily[0], daily[17], daily[250], daily[399], sparse[1]]
    const keys = [
      ...picks.map((r) => ({ tenant: "default", id: r.id })),
      { tenant: "other", id: daily[5].id }, // another tenant's id: not found
      { tenant: "default", id: makeRecordId(firstDay + 10 * DAY_MS) }, // no such record
      { tenant: "default", id: makeRecordId(Date.UTC(1999, 0, 1)) } // no partition at all
    ]
    const { locked, result } = await partitionsLockedBy(Effect.flatMap(RecordStore, (s) => s.findByIds(keys)))
    expect(result.map((r) => Option.getOrUndefined(r)?.id ?? null)).toEqual([
      ...picks.map((r) => r.id),
      null,
      null,
      null
    ])
    // The five records' partitions, and those of days 5 and 10, which were looked in.
    const days = [0, 17, 250, 399, 200, 5, 10].map((day) => partitionOf(firstDay + day * DAY_MS))
    expect(locked).toEqual(days.toSorted())
  })

  it("reads a batch of recent ids over many of the newest partitions in one prepared statement, whatever days it names", async () => {
    // Batches as recent reads make them: ids of the last weeks, a different set of days each
    // time (twice over), in windows of the newest 16, 32, 32 and 4 days.
    const batches = [[399, 398, 390], [395, 380, 371, 399], [370, 385], [399, 396, 10]]
    const twice = [...batches, ...batches]
    const { locked, result } = await partitionsLockedBy(
      Effect.flatMap(PgClient.PgClient, (sql) =>
        Effect.gen(function*() {
          const answers: Array<ReadonlyArray<string | null>> = []
          for (const days of twice) {
            const found = yield* Effect.flatMap(RecordStore, (s) =>
              s.findByIds([
                ...days.map((day) => ({ tenant: "default", id: daily[day].id })),
                { tenant: "other", id: daily[days[0]].id }
              ]))
            answers.push(found.map((r) => Option.getOrUndefined(r)?.id ?? null))
          }
          // Statements this connection prepared that look ids up in more than one partition.
          const prepared = yield* sql<{ readonly n: number }>`
          SELECT count(*)::int AS n FROM pg_prepared_statements
          WHERE statement LIKE '%WHERE id = ANY($1::uuid[]) UNION ALL %' AND statement NOT LIKE '%pg_prepared%'`
          return { answers, unions: prepared[0].n }
        }))
    )
    expect(result.answers).toEqual(twice.map((days) => [...days.map((day) => daily[day].id), null]))
    // A statement for each window, prepared once for the eight batches (the last one's old day 10 went on its own).
    expect(result.unions).toBe(3)
    // The newest 32 days hold every recent read: no older partition but day 10 was touched.
    const older = locked.filter((name) => name < partitionOf(firstDay + (DAYS - 32) * DAY_MS))
    expect(older).toEqual([partitionOf(firstDay + 10 * DAY_MS)])
  })

  it("whereas a prepared read by id through the parent table locks all of them (why reads name their partition)", async () => {
    const { locked } = await partitionsLockedBy(Effect.flatMap(PgClient.PgClient, (sql) =>
      Effect.gen(function*() {
        yield* sql.unsafe("SET LOCAL plan_cache_mode = force_generic_plan")
        yield* sql.unsafe(
          "PREPARE parent_by_id(uuid, timestamptz) AS SELECT id FROM records WHERE id = $1 AND occurred_at = $2"
        )
        yield* sql.unsafe(`EXECUTE parent_by_id('${daily[7].id}', '${daily[7].occurredAt.toISOString()}')`)
        yield* sql.unsafe("DEALLOCATE parent_by_id")
      })))
    expect(locked.length).toBeGreaterThanOrEqual(DAYS)
  })

  it("serves a stream's newest page from the newest partitions, and a deep page from where its cursor is", async () => {
    const newest = await partitionsLockedBy(
      Effect.flatMap(RecordStore, (s) => s.list({ tenant: "default", stream: "daily", order: "desc", limit: 2 }))
    )
    expect(newest.result.map((r) => r.id)).toEqual([daily[399].id, daily[398].id])
    expect(newest.locked.length).toBeLessThanOrEqual(3)

    const after = daily[150]
    const deep = await partitionsLockedBy(Effect.flatMap(RecordStore, (s) =>
      s.list({
        tenant: "default",
        stream: "daily",
        order: "desc",
        limit: 3,
        after: { occurredAt: after.occurredAt, id: after.id }
      })))
    expect(deep.result.map((r) => r.id)).toEqual([daily[149].id, daily[148].id, daily[147].id])
    // The cursor's partition and the two before it held two; the walk widened once, to twelve more.
    expect(deep.locked.length).toBe(15)
  })

  it("pages through a sparse stream across hundreds of empty partitions, both ways, by key and in a range", async () => {
    const pageAll = async (query: Omit<PageQuery, "after">) => {
      const ids: Array<string> = []
      let after: PageQuery["after"]
      for (let i = 0; i < 10; i++) {
        const page = await store((s) => s.list({ ...query, after }))
        ids.push(...page.map((r) => r.id))
        if (page.length < query.limit) return ids
        const last = page[page.length - 1]
        after = { occurredAt: new Date(last.occurredAt), id: last.id }
      }
      return ids
    }
    const base = { tenant: "default", stream: "sparse", limit: 1 } as const
    expect(await pageAll({ ...base, order: "desc" })).toEqual(sparse.map((r) => r.id).toReversed())
    expect(await pageAll({ ...base, order: "asc" })).toEqual(sparse.map((r) => r.id))
    expect(await pageAll({ ...base, order: "asc", key: "k" })).toEqual([sparse[1].id, sparse[2].id])
    expect(
      await pageAll({
        ...base,
        order: "desc",
        from: new Date(firstDay + 5 * DAY_MS),
        to: sparse[2].occurredAt
      })
    ).toEqual([sparse[1].id, sparse[0].id])
    expect(await pageAll({ ...base, stream: "nothing-here", order: "desc" })).toEqual([])
  })

  it("finds records in a partition another process made, and answers for one another process dropped", async () => {
    // Another replica backfills into 1990 and stores a record there.
    const old = record(Date.UTC(1990, 5, 15), "backfill")
    await direct(
      `CREATE TABLE records_19900615 PARTITION OF records
         FOR VALUES FROM ('1990-06-15T00:00:00Z') TO ('1990-06-16T00:00:00Z')`
    )
    await direct(
      `INSERT INTO records (tenant_id, id, stream, occurred_at, data)
         VALUES ('default', '${old.id}', 'backfill', '${old.occurredAt.toISOString()}', '{}')`
    )
    const [found] = await store((s) => s.findByIds([{ tenant: "default", id: old.id }]))
    expect(Option.getOrThrow(found).stream).toBe("backfill")
    const page = await store((s) => s.list({ tenant: "default", stream: "backfill", order: "asc", limit: 10 }))
    expect(page.map((r) => r.id)).toEqual([old.id])

    // Another replica's retention drops a partition this process has read from.
    const gone = daily[1]
    await store((s) => s.findByIds([{ tenant: "default", id: gone.id }]))
    await direct(`DROP TABLE ${partitionOf(gone.occurredAt.getTime())}`)
    const [missing] = await store((s) => s.findByIds([{ tenant: "default", id: gone.id }]))
    expect(Option.isNone(missing)).toBe(true)
    const oldest = await store((s) => s.list({ tenant: "default", stream: "daily", order: "asc", limit: 2 }))
    expect(oldest.map((r) => r.id)).toEqual([daily[0].id, daily[2].id])
  })
})
