/**
 * Storage on the real PostgreSQL (README: Storage): partitions made on need and ahead of
 * time, retention, pruning proven with EXPLAIN, and group commit.
 */
import { PgClient } from "@effect/sql-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { freshDatabase, makeTestApp, pgDb, postgresAvailable, recordOf, type TestApp } from "@strata/testing"
import { Context, Duration, Effect, Exit, Layer, ManagedRuntime, Option, Redacted } from "effect"
import { layerStorage } from "../src/App.ts"
import type { IdempotencyStore } from "../src/idempotency/IdempotencyStore.ts"
import { maintainOnce } from "../src/maintenance/Maintenance.ts"
import { AppConfig, type ConfigServices, type Settings } from "../src/platform/config/AppConfig.ts"
import { layerConnection } from "../src/platform/sql/Connection.ts"
import { runMigrations } from "../src/platform/sql/Migrations.ts"
import type { ChangeLog } from "../src/records/ChangeLog.ts"
import { makeRecordId } from "../src/records/RecordId.ts"
import { RecordStore, type RecordToStore } from "../src/records/RecordStore.ts"
import { RecordWriter } from "../src/records/RecordWriter.ts"

type Services = RecordStore | IdempotencyStore | ChangeLog | RecordWriter | PgClient.PgClient | ConfigServices

const available = await postgresAvailable()
const suite = available ? describe : describe.skip

const record = (occurredAt: string, stream = "s", tenant = "default"): RecordToStore => ({
  tenant,
  id: makeRecordId(Date.parse(occurredAt)),
  stream,
  key: null,
  occurredAt: new Date(occurredAt),
  data: { at: occurredAt },
  dataText: JSON.stringify({ at: occurredAt }),
  traceparent: null,
  schemaVersion: null
})

/** What EXPLAIN (FORMAT JSON) answers, as far as `relationsIn` reads it. */
type ExplainJson = ReadonlyArray<{ readonly Plan: PlanNode }>

interface PlanNode {
  readonly "Node Type": string
  readonly "Relation Name"?: string
  readonly Plans?: ReadonlyArray<PlanNode>
}

/** Every relation a plan reads, from EXPLAIN (FORMAT JSON). */
const relationsIn = (plan: ExplainJson): Array<{ relation: string; node: string }> => {
  const out: Array<{ relation: string; node: string }> = []
  const walk = (node: PlanNode) => {
    if (node["Relation Name"]) out.push({ relation: node["Relation Name"], node: node["Node Type"] })
    for (const child of node.Plans ?? []) walk(child)
  }
  walk(plan[0].Plan)
  return out
}

suite("storage on PostgreSQL", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let runtime: ManagedRuntime.ManagedRuntime<Services, unknown>
  const run = <A, E>(effect: Effect.Effect<A, E, Services>) => runtime.runPromise(effect)
  const explain = (query: string) =>
    run(
      Effect.flatMap(
        PgClient.PgClient,
        (sql) => sql.unsafe<{ "QUERY PLAN": ExplainJson }>(`EXPLAIN (FORMAT JSON) ${query}`)
      )
    )
      .then((rows) => relationsIn(rows[0]["QUERY PLAN"]))

  beforeAll(async () => {
    db = await freshDatabase()
    const Sql = PgClient.layer({ url: Redacted.make(db.url), maxConnections: 4 })
    const Config = AppConfig.layerWith({ retention: Option.some(Duration.days(365)) })
    runtime = ManagedRuntime.make(
      RecordWriter.layer.pipe(
        Layer.provideMerge(layerStorage),
        Layer.provideMerge(Layer.effectDiscard(runMigrations)),
        Layer.provideMerge(Sql),
        Layer.provideMerge(Config)
      )
    )
    // Enough rows over several months and streams for the planner to prefer indexes.
    await run(Effect.gen(function*() {
      const writer = yield* RecordWriter
      for (const month of ["2026-01", "2026-02", "2026-03", "2026-04"]) {
        const rows = Array.from(
          { length: 1000 },
          (_, i) =>
            record(
              `${month}-${String(1 + (i % 28)).padStart(2, "0")}T00:00:${String(i % 60).padStart(2, "0")}Z`,
              `stream-${i % 50}`
            )
        )
        yield* writer.write(rows as [RecordToStore, ...Array<RecordToStore>])
      }
      const sql = yield* PgClient.PgClient
      yield* sql`ANALYZE records`
    }))
  }, 60_000)

  afterAll(async () => {
    await runtime?.dispose()
    await db?.drop()
  })

  it("creates a partition the first time a record needs it: a backfill into 2019 works", async () => {
    const { records: [stored] } = await run(
      Effect.flatMap(RecordWriter, (w) => w.write([record("2019-03-05T12:00:00Z")]))
    )
    const [found] = await run(Effect.flatMap(RecordStore, (d) => d.findByIds([{ tenant: "default", id: stored.id }])))
    // Read back as every answer writes it: the record as stored, in the contract's form.
    expect(JSON.parse(Option.getOrThrow(found).text)).toEqual(stored)
    const tables = await run(
      Effect.flatMap(
        PgClient.PgClient,
        (sql) => sql<{ relname: string }>`SELECT relname FROM pg_class WHERE relname = 'records_20190301'`
      )
    )
    expect(tables).toHaveLength(1)
  })

  it("looks a record up by id in one partition, through its index", async () => {
    const { records: [stored] } = await run(
      Effect.flatMap(RecordWriter, (w) => w.write([record("2026-02-14T10:00:00Z")]))
    )
    const plan = await explain(
      `SELECT * FROM records WHERE id = '${stored.id}' AND occurred_at = '${stored.occurredAt}' AND tenant_id = 'default'`
    )
    expect(plan.map((p) => p.relation)).toEqual(["records_20260201"])
    expect(plan[0].node).toMatch(/Index/)
  })

  it("on generic plans (DATABASE_PLAN_CACHE_MODE's default) a prepared read by id still reads one partition", async () => {
    const { records: [stored] } = await run(
      Effect.flatMap(RecordWriter, (w) => w.write([record("2026-02-14T10:00:00Z")]))
    )
    const modeOf = (settings: Partial<Settings>) =>
      Effect.runPromise(
        Effect.scoped(
          Effect.flatMap(
            Layer.build(layerConnection.pipe(Layer.provide(AppConfig.layerWith({
              databaseUrl: Option.some(Redacted.make(db.url)),
              migrateOnStart: false,
              ...settings
            })))),
            (context) => {
              const sql = Context.get(context, PgClient.PgClient)
              // One connection for PREPARE and EXECUTE: a transaction holds it.
              return sql.withTransaction(Effect.gen(function*() {
                const [{ plan_cache_mode }] = yield* sql<{ plan_cache_mode: string }>`SHOW plan_cache_mode`
                yield* sql.unsafe(
                  "PREPARE by_id(uuid, timestamptz, text) AS SELECT * FROM records WHERE id = $1 AND occurred_at = $2 AND tenant_id = $3"
                )
                const [row] = yield* sql.unsafe<{ "QUERY PLAN": ExplainJson }>(
                  `EXPLAIN (FORMAT JSON) EXECUTE by_id('${stored.id}', '${stored.occurredAt}', 'default')`
                )
                yield* sql.unsafe("DEALLOCATE by_id")
                return {
                  mode: plan_cache_mode,
                  plan: JSON.stringify(row["QUERY PLAN"]),
                  relations: relationsIn(row["QUERY PLAN"])
                }
              }))
            }
          )
        )
      )
    const generic = await modeOf({})
    expect(generic.mode).toBe("force_generic_plan")
    // Pruned when the plan starts rather than when it is made: the other partitions are "Subplans Removed".
    expect(generic.relations.map((r) => r.relation)).toEqual(["records_20260201"])
    expect(generic.plan).toMatch(/"Subplans Removed":[1-9]/)
    expect((await modeOf({ databasePlanCacheMode: "force_custom_plan" })).mode).toBe("force_custom_plan")
    // "server" sends nothing: the server's own setting applies (PostgreSQL's default here).
    expect((await modeOf({ databasePlanCacheMode: "server" })).mode).toBe("auto")
  })

  it("reads a time range from the overlapping partitions only, through an index", async () => {
    const plan = await explain(
      `SELECT * FROM records WHERE tenant_id = 'default' AND stream = 'stream-7'
         AND occurred_at >= '2026-02-10T00:00:00Z' AND occurred_at < '2026-03-05T00:00:00Z'
       ORDER BY occurred_at DESC, id DESC LIMIT 100`
    )
    expect(plan.map((p) => p.relation).toSorted()).toEqual(["records_20260201", "records_20260301"])
    // Index Scan, or Bitmap Heap Scan over a Bitmap Index Scan: never a Seq Scan.
    for (const p of plan) expect(p.node).toMatch(/Index|Bitmap Heap Scan/)
  })

  it("makes partitions ahead of time and drops whole partitions older than RETENTION", async () => {
    await run(Effect.flatMap(RecordWriter, (w) => w.write([record("2020-05-05T00:00:00Z")])))
    const result = await run(maintainOnce)
    expect(result.dropped).toContain("records_20200501")
    expect(result.dropped).toContain("records_20190301")
    expect(result.dropped).not.toContain("records_20260101")
    const next = new Date()
    next.setUTCMonth(next.getUTCMonth() + 1, 1)
    const name = `records_${next.toISOString().slice(0, 7).replace("-", "")}01`
    const tables = await run(
      Effect.flatMap(
        PgClient.PgClient,
        (sql) => sql<{ relname: string }>`SELECT relname FROM pg_class WHERE relname = ${name}`
      )
    )
    expect(tables).toHaveLength(1)
  })

  it("stores the other units of a group commit when one of them cannot be stored", async () => {
    const { records: [existing] } = await run(
      Effect.flatMap(RecordWriter, (w) => w.write([record("2026-03-01T00:00:00Z")]))
    )
    const duplicate: RecordToStore = { ...record(existing.occurredAt), id: existing.id }
    const results = await run(Effect.flatMap(RecordWriter, (w) =>
      Effect.all([
        Effect.exit(w.write([record("2026-03-02T00:00:00Z", "ok-1")])),
        Effect.exit(w.write([record("2026-03-02T00:00:00Z", "bad"), duplicate])),
        Effect.exit(w.write([record("2026-03-02T00:00:00Z", "ok-2")]))
      ], { concurrency: "unbounded" })))
    expect(results.map(Exit.isSuccess)).toEqual([true, false, true])
    const bad = await run(
      Effect.flatMap(RecordStore, (d) => d.list({ tenant: "default", stream: "bad", order: "asc", limit: 10 }))
    )
    expect(bad).toEqual([])
  })

  describe("a unit larger than one statement (an atomic bulk body)", () => {
    const unit = (stream: string, n: number) =>
      Array.from(
        { length: n },
        (_, i) =>
          record(
            `2026-05-${String(1 + (i % 28)).padStart(2, "0")}T00:00:00.${String(i % 1000).padStart(3, "0")}Z`,
            stream
          )
      ) as unknown as [RecordToStore, ...Array<RecordToStore>]
    const counted = (stream: string) =>
      run(
        Effect.flatMap(PgClient.PgClient, (sql) =>
          sql<
            { readonly records: number; readonly outbox: number; readonly changes: number; readonly numbers: number }
          >`
          SELECT (SELECT count(*)::int FROM records WHERE stream = ${stream}) AS records,
                 (SELECT count(*)::int FROM outbox o JOIN records r ON r.id = o.record_id WHERE r.stream = ${stream}) AS outbox,
                 (SELECT count(*)::int FROM changes WHERE stream = ${stream}) AS changes,
                 (SELECT count(DISTINCT (xid, n))::int FROM changes WHERE stream = ${stream}) AS numbers`)
      )

    it("writes it in one transaction: every change numbered once, in the unit's order", async () => {
      const written = await run(Effect.flatMap(RecordWriter, (w) => w.writeAlone(unit("big", 12_001))))
      expect(await counted("big")).toEqual([{ records: 12_001, outbox: 12_001, changes: 12_001, numbers: 12_001 }])
      const rows = await run(
        Effect.flatMap(
          PgClient.PgClient,
          (sql) =>
            sql<{ readonly xid: string; readonly n: number; readonly record_id: string }>`
          SELECT xid::text, n, record_id::text FROM changes WHERE stream = 'big' ORDER BY xid, n`
        )
      )
      expect(new Set(rows.map((r) => r.xid)).size).toBe(1)
      expect(rows.map((r) => r.record_id)).toEqual(written.records.map((r) => r.id))
      expect(rows.map((r) => r.n)).toEqual(Array.from({ length: 12_001 }, (_, i) => i + 1))
    }, 60_000)

    it("stores none of it when a statement after the first fails", async () => {
      const records = unit("half", 12_000)
      // Valid to the server, refused by PostgreSQL in the third statement: the first two roll back too.
      records[11_000] = { ...records[11_000], dataText: "{not json" }
      const exit = await run(Effect.exit(Effect.flatMap(RecordWriter, (w) => w.writeAlone(records))))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(await counted("half")).toEqual([{ records: 0, outbox: 0, changes: 0, numbers: 0 }])
    }, 60_000)
  })

  describe("group commit over HTTP", () => {
    let app: TestApp
    beforeAll(() => {
      app = makeTestApp(pgDb(db.url), { writeBatchWindow: Duration.millis(5) })
    })
    afterAll(() => app.dispose())

    it("coalesces 50 concurrent POSTs into far fewer transactions, each caller getting its own record", async () => {
      const stream = "group-commit"
      const responses = await Promise.all(
        Array.from(
          { length: 50 },
          (_, i) => app.json("/data", { stream, key: `caller-${i}`, data: { i } }).then(recordOf)
        )
      )
      responses.forEach((body, i) => expect(body).toMatchObject({ key: `caller-${i}`, data: { i } }))
      const tx = await run(
        Effect.flatMap(
          PgClient.PgClient,
          (sql) => sql<{ n: number }>`SELECT count(DISTINCT xmin::text)::int AS n FROM records WHERE stream = ${stream}`
        )
      )
      expect(tx[0].n).toBeLessThanOrEqual(10)
      const events = await run(
        Effect.flatMap(PgClient.PgClient, (sql) =>
          sql<
            { n: number }
          >`SELECT count(*)::int AS n FROM outbox o JOIN records r ON r.id = o.record_id WHERE r.stream = ${stream}`)
      )
      expect(events[0].n).toBe(50)
    })
  })
})
