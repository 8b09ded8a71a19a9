/**
 * The measurements of docs/FILTERS.md: filtered pages with and without a
 * declared index, how long the indexes take to build, and what they cost a
 * write. Skipped unless FILTERS_MEASURE is set:
 * FILTERS_MEASURE=1 ROWS=1000000 pnpm exec vitest run packages/server/test/filters-measure.test.ts
 */
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { makeTestApp, pgDb, scopedDatabase } from "@strata/testing"
import { Effect, Exit, Redacted, Scope } from "effect"

const ROWS = Number(process.env.ROWS ?? 20_000)
const RUNS = Number(process.env.RUNS ?? 30)

const pct = (xs: Array<number>, p: number) =>
  xs.toSorted((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]

describe.skipIf(process.env.FILTERS_MEASURE === undefined)("filters and declared indexes, measured", () => {
  it("pages, index builds and writes", async () => {
    const scope = Effect.runSync(Scope.make())
    const url = await Effect.runPromise(Scope.provide(scope)(scopedDatabase))
    const run = <A>(effect: Effect.Effect<A, unknown, PgClient.PgClient>) =>
      Effect.runPromise(
        Effect.scoped(Effect.provide(effect, PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })))
      )
    // As the service connects by default (DATABASE_PLAN_CACHE_MODE).
    await run(Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      yield* sql.unsafe(`ALTER DATABASE "${new URL(url).pathname.slice(1)}" SET plan_cache_mode = force_generic_plan`)
    }))
    const app = makeTestApp(pgDb(url))
    try {
      for (const month of [8, 9, 10]) {
        expect(
          (await app.json("/data", {
            stream: "m",
            occurredAt: new Date(Date.UTC(2026, month, 2)).toISOString(),
            data: { customer: -1 }
          })).status
        ).toBe(201)
      }
      const span = Date.UTC(2026, 10, 30) - Date.UTC(2026, 8, 1)
      const insert = (stream: string, n: number, offset: number) =>
        run(Effect.gen(function*() {
          const sql = yield* PgClient.PgClient
          const t0 = performance.now()
          yield* sql.unsafe(`
          INSERT INTO records (tenant_id, id, stream, key, occurred_at, ingested_at, data, schema_version)
          SELECT 'test', (substr(h,1,8)||'-'||substr(h,9,4)||'-7'||substr(r,1,3)||'-8'||substr(r,4,3)||'-'||substr(r,7,12))::uuid,
            '${stream}', NULL, to_timestamp(ms / 1000.0), now(),
            jsonb_build_object('customer', i % 1000, 'amount', i, 'tags', jsonb_build_array(CASE WHEN i % 1000 = 7 THEN 'rare' WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END)), NULL
          FROM (SELECT i, ${Date.UTC(2026, 8, 1)} + (i::bigint * ${span} / ${
            ROWS + offset + n
          }) AS ms, md5(i::text || '${stream}') AS r FROM generate_series(${offset + 1}, ${offset + n}) i) g,
          LATERAL (SELECT lpad(to_hex(g.ms), 12, '0') AS h) x`)
          return performance.now() - t0
        }))
      console.log(`loaded ${ROWS} rows in ${(await insert("m", ROWS, 0)).toFixed(0)} ms`)
      await run(Effect.gen(function*() {
        const sql = yield* PgClient.PgClient
        yield* sql`ANALYZE records`
      }))
      const middle = new Date(Date.UTC(2026, 8, 1) + span / 2).toISOString()
      const time = async (label: string, path: string) => {
        const ms: Array<number> = []
        let scanned = 0
        let n = 0
        for (let i = 0; i < RUNS; i++) {
          const t0 = performance.now()
          const res = await app.request(path)
          const body = (await res.json()) as { records: Array<unknown>; scanned?: number }
          ms.push(performance.now() - t0)
          expect(res.status).toBe(200)
          scanned = body.scanned ?? 0
          n = body.records.length
        }
        console.log(
          `${label}: p50 ${pct(ms, 0.5).toFixed(1)} ms, p99 ${
            pct(ms, 0.99).toFixed(1)
          } ms, records ${n}, scanned ${scanned}`
        )
      }
      const pages = async (tag: string) => {
        await time(`${tag} unfiltered, first page`, "/data?stream=m&limit=100")
        await time(`${tag} unfiltered, deep (to=middle)`, `/data?stream=m&limit=100&to=${middle}`)
        await time(`${tag} customer=eq.42, first page`, "/data?stream=m&limit=100&data.customer=eq.42")
        await time(
          `${tag} customer=eq.42, deep (to=middle)`,
          `/data?stream=m&limit=100&to=${middle}&data.customer=eq.42`
        )
        await time(
          `${tag} amount=gte.${ROWS - 500}, first page`,
          `/data?stream=m&limit=100&data.amount=gte.${ROWS - 500}`
        )
        await time(
          `${tag} tags contains odd, first page`,
          "/data?stream=m&limit=100&data.tags=contains.%5B%22odd%22%5D"
        )
        await time(
          `${tag} tags contains odd, deep (to=middle)`,
          `/data?stream=m&limit=100&to=${middle}&data.tags=contains.%5B%22odd%22%5D`
        )
        await time(
          `${tag} tags contains rare, first page`,
          "/data?stream=m&limit=100&data.tags=contains.%5B%22rare%22%5D"
        )
      }
      await pages("undeclared")
      const registrar = await app.createKey({ scopes: ["schemas:write", "records:read"] })
      const t0 = performance.now()
      expect(
        (await app.json("/streams/m/indexes", { indexes: [{ path: "customer" }, { path: "tags", kind: "gin" }] }, {
          method: "PUT"
        }, registrar)).status
      ).toBe(200)
      for (;;) {
        const list = (await (await app.request("/streams/m/indexes")).json()) as { indexes: Array<{ state: string }> }
        if (list.indexes.every((i) => i.state !== "building")) {
          console.log(
            `built 2 indexes over ${ROWS} rows in ${(performance.now() - t0).toFixed(0)} ms: ${
              JSON.stringify(list.indexes)
            }`
          )
          break
        }
        await new Promise((r) => setTimeout(r, 100))
      }
      await new Promise((r) => setTimeout(r, 5_500))
      await pages("declared")
      // What the indexes cost a write: the same rows into the indexed stream and into one without.
      const W = Number(process.env.WRITES ?? 20_000)
      for (let round = 0; round < 3; round++) {
        const plain = await insert("w", W, ROWS + 1_000_000 * (round + 1))
        const indexed = await insert("m", W, ROWS + 1_000_000 * (round + 1) + 500_000)
        console.log(
          `insert ${W} rows: no index ${plain.toFixed(0)} ms, with customer btree + tags gin ${indexed.toFixed(0)} ms`
        )
      }
      // The same through POST /data, in process, 32 at a time.
      const posts = async (stream: string, n: number) => {
        const t0 = performance.now()
        let next = 0
        await Promise.all(Array.from({ length: 32 }, async () => {
          while (next < n) {
            const i = next++
            const res = await app.json("/data", { stream, data: { customer: i % 1000, amount: i, tags: ["odd"] } })
            expect(res.status).toBe(201)
          }
        }))
        return n / ((performance.now() - t0) / 1000)
      }
      const P = Number(process.env.POSTS ?? 3000)
      for (let round = 0; round < 3; round++) {
        const plain = await posts("w", P)
        const indexed = await posts("m", P)
        console.log(
          `POST /data x${P}: no index ${plain.toFixed(0)}/s, with customer btree + tags gin ${indexed.toFixed(0)}/s`
        )
      }
    } finally {
      await app.dispose()
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }, 1_800_000)
})
