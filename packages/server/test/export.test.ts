/**
 * README, Export: `GET /data?stream=…` with `Accept: application/x-ndjson`
 * answers every record of the query, one a line, exactly as `GET /data/{id}`
 * answers it, with no limit or cursor, read page by page as the client takes
 * it; a client that goes away stops the read. The list and the export are
 * compressed when `Accept-Encoding` asks for zstd, br or gzip.
 */
import { describe, expect } from "@effect/vitest"
import {
  acquireApp,
  describeBackends,
  expectProblem,
  makeSocketApp,
  makeTestApp,
  memory,
  parsePrometheusText,
  postgres,
  type TestApp
} from "@strata/testing"
import { request as httpRequest } from "node:http"
import { brotliDecompressSync, gunzipSync, zstdDecompressSync } from "node:zlib"

interface Rec {
  readonly id: string
  readonly key: string | null
  readonly occurredAt: string
}

const seed = async (app: TestApp, stream: string, n: number) => {
  const start = Date.parse("2026-11-01T00:00:00Z")
  const body = Array.from({ length: n }, (_, i) =>
    JSON.stringify({
      stream,
      key: i % 2 === 0 ? "even" : "odd",
      occurredAt: new Date(start + i * 1000).toISOString(),
      data: { i, price: "@price@" }
    }).replace("\"@price@\"", "19.999999999999999999")).join("\n")
  const res = await app.request("/data/bulk", {
    method: "POST",
    headers: { "content-type": "application/x-ndjson" },
    body
  })
  expect(res.status).toBe(200)
}

const ndjson = { accept: "application/x-ndjson" }
const linesOf = (text: string) => text.split("\n").filter((l) => l !== "")

describeBackends(
  "GET /data as NDJSON",
  [memory, postgres],
  (db) => acquireApp(() => makeTestApp(db.layer)),
  ({ subject, test }) => {
    const app = () => subject()!
    const stream = `export-${Math.random().toString(36).slice(2)}`
    let seeded: Promise<void> | undefined
    const ready = () => seeded ??= seed(app(), stream, 2500)

    test("streams every record of the stream, newest first, each line as GET /data/{id} answers it", async () => {
      await ready()
      const res = await app().request(`/data?stream=${stream}`, { headers: ndjson })
      expect(res.status).toBe(200)
      expect(res.headers.get("content-type")).toContain("application/x-ndjson")
      expect(res.headers.get("strata-position")).toMatch(/\S/)
      const text = await res.text()
      expect(text.endsWith("\n")).toBe(true)
      const lines = linesOf(text)
      expect(lines).toHaveLength(2500)
      const records = lines.map((l) => JSON.parse(l) as Rec)
      const times = records.map((r) => r.occurredAt)
      expect(times).toEqual(times.toSorted().toReversed())
      for (const i of [0, 999, 1000, 2499]) {
        const one = await app().request(`/data/${records[i].id}`)
        expect(await one.text()).toBe(lines[i])
      }
      expect(lines[0]).toContain("\"price\":19.999999999999999999")
    }, 60_000)

    test("takes key, from, to and order=asc, across pages", async () => {
      await ready()
      const res = await app().request(
        `/data?stream=${stream}&key=even&order=asc&from=2026-11-01T00:05:00Z&to=2026-11-01T00:40:00Z`,
        { headers: { accept: "application/jsonl" } }
      )
      const records = linesOf(await res.text()).map((l) => JSON.parse(l) as Rec)
      // Seconds 300 to 2399, even ones: 1050 records.
      expect(records).toHaveLength(1050)
      expect(records.every((r) => r.key === "even")).toBe(true)
      expect(records[0].occurredAt).toBe("2026-11-01T00:05:00.000Z")
      expect(records.at(-1)!.occurredAt).toBe("2026-11-01T00:39:58.000Z")
    }, 60_000)

    test("takes the filters on data, across pages, exactly", async () => {
      await ready()
      // i >= 2000 and odd: 250 records, in the first page of 1,000 (newest first) read in full.
      const res = await app().request(`/data?stream=${stream}&data.i=gte.2000&key=odd`, { headers: ndjson })
      expect(res.status).toBe(200)
      const records = linesOf(await res.text()).map((l) => JSON.parse(l) as Rec & { data: { i: number } })
      expect(records).toHaveLength(250)
      expect(records.every((r) => r.data.i >= 2000 && r.data.i % 2 === 1)).toBe(true)
      const exact = await app().request(`/data?stream=${stream}&data.price=lt.20&data.i=lt.3`, { headers: ndjson })
      expect(linesOf(await exact.text())).toHaveLength(3)
      await expectProblem(
        await app().request(`/data?stream=${stream}&data.i=near.5`, { headers: ndjson }),
        400,
        "validation"
      )
    }, 60_000)

    test("an empty stream is an empty answer; limit and cursor are a 400", async () => {
      const res = await app().request("/data?stream=nothing-here", { headers: ndjson })
      expect(res.status).toBe(200)
      expect(await res.text()).toBe("")
      const problem = await expectProblem(
        await app().request(`/data?stream=${stream}&limit=5`, { headers: ndjson }),
        400,
        "validation"
      )
      expect(problem.errors).toEqual([expect.objectContaining({ path: "limit" })])
    })

    describe("compressed answers", () => {
      const decode = { gzip: gunzipSync, br: brotliDecompressSync, zstd: zstdDecompressSync } as const

      test("the export in zstd, br or gzip, as Accept-Encoding prefers", async () => {
        await ready()
        const plain = await (await app().request(`/data?stream=${stream}`, { headers: ndjson })).text()
        for (const [accept, coding] of [["gzip", "gzip"], ["br;q=0.9, gzip;q=0.5", "br"], ["gzip, br, zstd", "zstd"]]) {
          const res = await app().request(`/data?stream=${stream}`, {
            headers: { ...ndjson, "accept-encoding": accept }
          })
          expect(res.headers.get("content-encoding"), accept).toBe(coding)
          expect(res.headers.get("vary")).toContain("accept-encoding")
          const sent = Buffer.from(await res.arrayBuffer())
          expect(sent.length).toBeLessThan(plain.length / 3)
          expect(decode[coding as keyof typeof decode](sent).toString()).toBe(plain)
        }
      }, 60_000)

      test("a list page compressed when large enough, as it is when small or not asked", async () => {
        await ready()
        const plain = await (await app().request(`/data?stream=${stream}&limit=100`)).text()
        const res = await app().request(`/data?stream=${stream}&limit=100`, { headers: { "accept-encoding": "gzip" } })
        expect(res.headers.get("content-encoding")).toBe("gzip")
        expect(gunzipSync(Buffer.from(await res.arrayBuffer())).toString()).toBe(plain)
        const small = await app().request(`/data?stream=nothing-here`, { headers: { "accept-encoding": "gzip" } })
        expect(small.headers.get("content-encoding")).toBeNull()
        expect(await small.json()).toEqual({ records: [], nextCursor: null })
        const refused = await app().request(`/data?stream=${stream}&limit=100`, {
          headers: { "accept-encoding": "gzip;q=0, identity" }
        })
        expect(refused.headers.get("content-encoding")).toBeNull()
      })
    })
  }
)

describeBackends(
  "GET /data as NDJSON over a socket",
  [postgres],
  (db) => acquireApp(() => makeSocketApp(db.layer)),
  ({ subject, test }) => {
    const app = () => subject()!
    const listCalls = async () =>
      parsePrometheusText(await (await app().request("/metrics", {}, null)).text()).sum(
        "strata_db_query_duration_seconds_count",
        { operation: "Db.list" }
      )

    test("a client that disconnects mid-export stops the read", async () => {
      const stream = `export-gone-${Math.random().toString(36).slice(2)}`
      await seed(app(), stream, 60_000)
      const before = await listCalls()
      // A raw request, so the test decides when to stop reading and close.
      const port = Number(new URL((await app().request("/health/live", {}, null)).url).port)
      const key = await app().createKey()
      await new Promise<void>((resolve, reject) => {
        const req = httpRequest({
          host: "127.0.0.1",
          port,
          path: `/data?stream=${stream}`,
          headers: { accept: "application/x-ndjson", authorization: `Bearer ${key}` }
        }, (res) => {
          res.once("data", () => {
            res.pause()
            req.destroy()
            resolve()
          })
        })
        req.on("error", (error) => (error as NodeJS.ErrnoException).code === "ECONNRESET" ? resolve() : reject(error))
        req.end()
      })
      await new Promise((r) => setTimeout(r, 1500))
      const read = (await listCalls()) - before
      // The whole export is 60 pages: far fewer were read.
      expect(read).toBeGreaterThan(0)
      expect(read).toBeLessThan(30)
    }, 120_000)
  }
)
