/**
 * README: Declared indexes — `PUT/GET /streams/{stream}/indexes` on every
 * backend; on PostgreSQL, the index built on every partition, given to a
 * partition made later, and used by a filtered page's statement (EXPLAIN).
 */
import { PgClient } from "@effect/sql-pg"
import { describe, expect } from "@effect/vitest"
import {
  acquireApp,
  backends,
  describeBackends,
  expectProblem,
  makeTestApp,
  pageOf,
  postgres,
  type TestApp
} from "@strata/testing"
import { Effect, Redacted, Result } from "effect"
import { parseFilters } from "../src/records/Filters.ts"
import { filteredStatement } from "../src/records/RecordStore.ts"

interface IndexList {
  readonly stream: string
  readonly indexes: ReadonlyArray<
    {
      readonly path: string
      readonly kind: string
      readonly state: string
      readonly built: number
      readonly partitions: number
    }
  >
}

const declare = async (app: TestApp, stream: string, body: unknown) => {
  const registrar = await app.createKey({ scopes: ["schemas:write", "records:read"] })
  return app.json(`/streams/${stream}/indexes`, body, { method: "PUT" }, registrar)
}

/** The stream's indexes once none is building any more. */
const settled = async (app: TestApp, stream: string): Promise<IndexList> => {
  for (let i = 0; i < 200; i++) {
    const list = (await (await app.request(`/streams/${stream}/indexes`)).json()) as IndexList
    if (list.indexes.every((x) => x.state !== "building")) return list
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error("an index is still building")
}

/** Records in three months, so the stream spans several partitions. */
const storeSpread = async (app: TestApp, stream: string, n: number) => {
  const records = Array.from({ length: n }, (_, i) => ({
    stream,
    occurredAt: new Date(Date.UTC(2026, 8 + (i % 3), 1 + (i % 27), 0, 0, i % 60)).toISOString(),
    data: { customer: i % 50, amount: i, tags: [i % 2 === 0 ? "even" : "odd"] }
  }))
  for (let at = 0; at < records.length; at += 500) {
    const res = await app.json("/data/batch", { records: records.slice(at, at + 500) })
    expect(res.status).toBe(201)
  }
}

describeBackends("declared indexes", backends, (db) => acquireApp(() => makeTestApp(db.layer)), ({ test }) => {
  describe("PUT /streams/{stream}/indexes", () => {
    test("declares paths, lists them with their state, and filters on them answer as without", async (app) => {
      await storeSpread(app, "indexed", 300)
      const before = (await pageOf(await app.request("/data?stream=indexed&data.customer=eq.7&limit=1000"))).records
      const res = await declare(app, "indexed", {
        indexes: [{ path: "customer" }, { path: "tags", kind: "gin" }]
      })
      expect(res.status, await res.clone().text()).toBe(200)
      const list = await settled(app, "indexed")
      expect(list.indexes.map((i) => [i.path, i.kind, i.state])).toEqual([
        ["customer", "btree", "ready"],
        ["tags", "gin", "ready"]
      ])
      expect(list.indexes.every((i) => i.built === i.partitions)).toBe(true)
      const after = (await pageOf(await app.request("/data?stream=indexed&data.customer=eq.7&limit=1000"))).records
      expect(after.map((r) => r.id)).toEqual(before.map((r) => r.id))
      expect(after).toHaveLength(6)
      const range = await pageOf(
        await app.request("/data?stream=indexed&data.customer=gte.48&data.tags=contains.%5B%22odd%22%5D&limit=1000")
      )
      expect(range.records.map((r) => (r.data as { customer: number }).customer).toSorted()).toEqual(
        Array.from({ length: 6 }, () => 49)
      )
      // Declaring the set again without one drops it.
      expect((await declare(app, "indexed", { indexes: [{ path: "customer" }] })).status).toBe(200)
      expect((await settled(app, "indexed")).indexes.map((i) => i.path)).toEqual(["customer"])
    }, 60_000)

    test("refuses a path that is not names of letters, digits, _ or -", async (app) => {
      await expectProblem(await declare(app, "indexed", { indexes: [{ path: "a.\"b\"" }] }), 400, "validation")
      await expectProblem(await declare(app, "indexed", { indexes: [{ path: "a", kind: "hash" }] }), 400, "validation")
    })
  })
})

describeBackends(
  "declared indexes in PostgreSQL",
  [postgres],
  (db) => Effect.map(acquireApp(() => makeTestApp(db.layer)), (app) => ({ app, url: db.url! })),
  ({ test }) => {
    const query = <A>(url: string, effect: Effect.Effect<A, unknown, PgClient.PgClient>) =>
      Effect.runPromise(Effect.scoped(Effect.provide(
        effect,
        // As the service connects by default: prepared statements, planned once for any parameters.
        PgClient.layer({
          url: Redacted.make(url),
          maxConnections: 1,
          startupParameters: { plan_cache_mode: "force_generic_plan" }
        })
      )))

    test("builds the index on every partition, gives it to a partition made later, and a filter uses it", async ({
      app,
      url
    }) => {
      await storeSpread(app, "explain", 3000)
      expect((await declare(app, "explain", { indexes: [{ path: "customer" }] })).status).toBe(200)
      const [index] = (await settled(app, "explain")).indexes
      expect(index).toMatchObject({ state: "ready" })
      expect(index.built).toBe(index.partitions)

      // A partition made after the build gets the index with its table.
      const later = await app.json("/data", {
        stream: "explain",
        occurredAt: "2025-01-15T00:00:00Z",
        data: { customer: 7 }
      })
      expect(later.status).toBe(201)
      const tenant = "test"
      const missing = await query(
        url,
        Effect.gen(function*() {
          const sql = yield* PgClient.PgClient
          yield* sql`ANALYZE records`
          return yield* sql<{ readonly partition: string }>`
            SELECT c.relname AS partition FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'records'::regclass AND NOT EXISTS (
              SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid
              AND pg_get_indexdef(x.indexrelid) LIKE '%#>%customer%'
            )`
        })
      )
      expect(missing).toEqual([])

      // The filtered page's statement, as the store sends it, over every partition.
      const filters = Result.getOrThrow(parseFilters(new URLSearchParams("data.customer=eq.7")))
      const plan = await query(
        url,
        Effect.gen(function*() {
          const sql = yield* PgClient.PgClient
          const partitions = yield* sql<{ readonly name: string }>`
            SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'records'::regclass ORDER BY c.relname DESC`
          const statement = filteredStatement({
            tenant,
            stream: "explain",
            order: "desc",
            limit: 101,
            filters,
            budget: 10_000,
            indexed: [{ path: ["customer"], kind: "btree" }]
          })
          const rows = yield* sql.unsafe<Record<string, string>>(
            `EXPLAIN ${statement.text(partitions.map((p) => p.name))}`,
            [...statement.params, 10_000, 101]
          )
          return rows.map((r) => Object.values(r)[0]).join("\n")
        })
      )
      // Every partition that holds the stream's rows is read through the declared index.
      // (an ordered Index Scan using it at scale; a Bitmap Index Scan on it and a sort on these tiny ones).
      for (const month of ["20260901", "20261001", "20261101"]) {
        expect(plan).not.toMatch(new RegExp(`Seq Scan on records_${month}`))
      }
      expect(plan.match(/Index Scan (?:on|using) rx_\w+/g)?.length).toBeGreaterThanOrEqual(3)
    }, 120_000)
  }
)
