/**
 * README, Bulk ingest: `POST /data/bulk` takes NDJSON, one record envelope a
 * line, checked as `POST /data` checks a body; `mode=atomic` (the default)
 * stores all or nothing, `mode=partial` stores the good lines; the answer
 * accounts for every line; limits, codings and Idempotency-Key as on the
 * other POSTs. On the in-memory Db and PostgreSQL, with small limits.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  acquireApp,
  describeBackends,
  expectProblem,
  makeSocketApp,
  makeTestApp,
  memory,
  memoryDb,
  pglite,
  postgres,
  type TestApp
} from "@strata/testing"
import { brotliCompressSync, deflateSync, gzipSync, zstdCompressSync } from "node:zlib"

interface BulkResult {
  readonly received: number
  readonly accepted: number
  readonly rejected: number
  readonly errors: ReadonlyArray<{ readonly line: number; readonly path: string; readonly message: string }>
}

const bulk = (
  app: TestApp,
  body: string | Uint8Array,
  options: { readonly mode?: string; readonly headers?: Record<string, string> } = {}
) =>
  app.request(`/data/bulk${options.mode === undefined ? "" : `?mode=${options.mode}`}`, {
    method: "POST",
    headers: { "content-type": "application/x-ndjson", ...options.headers },
    body
  })

/** Every record of the stream, page by page. */
const storedIn = async (app: TestApp, stream: string): Promise<Array<{ key: string | null; data: unknown }>> => {
  const out: Array<{ key: string | null; data: unknown }> = []
  let cursor: string | null = null
  do {
    const res = await app.request(
      `/data?stream=${stream}&order=asc&limit=1000${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`
    )
    const page = (await res.json()) as {
      records: Array<{ key: string | null; data: unknown }>
      nextCursor: string | null
    }
    out.push(...page.records)
    cursor = page.nextCursor
  } while (cursor !== null)
  return out
}

const line = (stream: string, i: number) => JSON.stringify({ stream, key: `k${i}`, data: { i, amount: "12.50" } })

/** 10,000 lines, bad at the given 1-based line numbers in different ways. */
const BAD: Record<number, string> = {
  7: "{\"stream\":\"x\",\"data\":",
  1234: "{\"stream\":\"UPPER\",\"data\":{}}",
  5000: "{\"stream\":\"s\",\"data\":{},\"extra\":1}",
  9000: "[1,2,3]",
  10000: "{\"stream\":\"s\",\"data\":{\"n\":1e99999}}"
}
const tenThousand = (stream: string) =>
  Array.from({ length: 10_000 }, (_, i) => BAD[i + 1] ?? line(stream, i + 1)).join("\n") + "\n"

const LIMITS = { maxBulkBytes: 4 * 1024 * 1024, maxBulkRecords: 20_000 }

const suite = (
  { subject, test }: {
    subject: () => TestApp | undefined
    test: (title: string, f: (app: TestApp) => Promise<void>, timeout?: number) => void
  }
) => {
  const app = () => subject()!
  const newStream = () => `bulk-${Math.random().toString(36).slice(2)}`

  describe("atomic (the default)", () => {
    test("stores 10,000 good lines, answering after the commit with the last write's position", async () => {
      const stream = newStream()
      const body = Array.from({ length: 10_000 }, (_, i) => line(stream, i + 1)).join("\n")
      const res = await bulk(app(), body)
      expect(res.status).toBe(200)
      expect(res.headers.get("strata-position")).toMatch(/\S/)
      expect(await res.json()).toEqual({ received: 10_000, accepted: 10_000, rejected: 0, errors: [] })
      const stored = await storedIn(app(), stream)
      expect(stored).toHaveLength(10_000)
      expect(stored.find((r) => r.key === "k42")).toMatchObject({ data: { i: 42, amount: "12.50" } })
      // Read your writes: the position is one a read may name.
      const read = await app().request(`/data?stream=${stream}&limit=1`, {
        headers: { "strata-position": res.headers.get("strata-position")! }
      })
      expect(read.status).toBe(200)
    }, 60_000)

    test("refuses 10,000 lines with bad ones at known places: a 400 naming each line, nothing stored", async () => {
      const stream = newStream()
      const res = await bulk(app(), tenThousand(stream))
      const problem = await expectProblem(res, 400, "validation")
      expect(problem.detail).toBe("5 of 10000 lines are invalid; nothing was stored")
      const lines = [...new Set(problem.errors!.map((e) => (e as { line?: number }).line))]
      expect(lines).toEqual([7, 1234, 5000, 9000, 10000])
      expect(problem.errors).toContainEqual(expect.objectContaining({ line: 1234, path: "stream" }))
      expect(problem.errors).toContainEqual(expect.objectContaining({ line: 5000, path: "extra" }))
      expect(problem.errors).toContainEqual(expect.objectContaining({ line: 10000, path: "data.n" }))
      expect(problem.errors).toContainEqual(
        expect.objectContaining({ line: 9000, path: "(line)", message: "must be a JSON object" })
      )
      expect(problem.errors!.find((e) => (e as { line?: number }).line === 7)?.message).toMatch(/not valid JSON/)
      expect(await storedIn(app(), stream)).toEqual([])
    }, 60_000)
  })

  describe("partial", () => {
    test("stores the good lines of 10,000 and reports the bad ones by line", async () => {
      const stream = newStream()
      const res = await bulk(app(), tenThousand(stream), { mode: "partial" })
      expect(res.status).toBe(200)
      const result = (await res.json()) as BulkResult
      expect(result).toMatchObject({ received: 10_000, accepted: 9_995, rejected: 5 })
      expect([...new Set(result.errors.map((e) => e.line))]).toEqual([7, 1234, 5000, 9000, 10000])
      const stored = await storedIn(app(), stream)
      expect(stored).toHaveLength(9_995)
      expect(stored.map((r) => r.key)).not.toContain("k7")
      expect(stored.map((r) => r.key)).toContain("k8")
    }, 60_000)

    test("makes a line over MAX_RECORD_BYTES that line's error", async () => {
      const stream = newStream()
      const huge = JSON.stringify({ stream, data: { pad: "x".repeat(200 * 1024) } })
      const res = await bulk(app(), [line(stream, 1), huge, line(stream, 3)].join("\n"), { mode: "partial" })
      const result = (await res.json()) as BulkResult
      expect(result).toMatchObject({ received: 3, accepted: 2, rejected: 1 })
      expect(result.errors).toEqual([expect.objectContaining({ line: 2, path: "(line)" })])
      const big = JSON.stringify({ stream, data: { pad: "x".repeat(65 * 1024) } })
      const second = (await (await bulk(app(), big, { mode: "partial" })).json()) as BulkResult
      expect(second.errors).toEqual([expect.objectContaining({ line: 1, path: "data" })])
    })
  })

  describe("the body", () => {
    test("takes a BOM, CRLF, blank lines and no final newline; blank lines count for line numbers only", async () => {
      const stream = newStream()
      const body = `\uFEFF${line(stream, 1)}\r\n\r\n   \n${line(stream, 2)}\r\n{"stream":"Bad","data":{}}\n\n${
        line(stream, 3)
      }`
      const res = await bulk(app(), body, { mode: "partial" })
      const result = (await res.json()) as BulkResult
      expect(result).toMatchObject({ received: 4, accepted: 3, rejected: 1 })
      expect(result.errors).toEqual([expect.objectContaining({ line: 5, path: "stream" })])
    })

    test("a body cut at a line boundary stores what it holds; cut inside a line, that line is the error", async () => {
      const stream = newStream()
      const lines = Array.from({ length: 100 }, (_, i) => line(stream, i + 1))
      const atBoundary = await bulk(app(), lines.slice(0, 50).join("\n"))
      expect(((await atBoundary.json()) as BulkResult).accepted).toBe(50)
      const text = lines.join("\n")
      const cut = text.slice(0, text.lastIndexOf("\n") + 10)
      const problem = await expectProblem(await bulk(app(), cut), 400, "validation")
      expect(problem.errors).toEqual([expect.objectContaining({ line: 100, path: "(line)" })])
      expect(await storedIn(app(), stream)).toHaveLength(50)
    })

    test("takes application/jsonl and refuses other content types with a 415", async () => {
      const stream = newStream()
      const ok = await bulk(app(), line(stream, 1), { headers: { "content-type": "application/jsonl" } })
      expect(ok.status).toBe(200)
      await expectProblem(
        await bulk(app(), line(stream, 1), { headers: { "content-type": "application/json" } }),
        415,
        "unsupported-media-type"
      )
      await expectProblem(
        await bulk(app(), line(stream, 1), { headers: { "content-type": "application/x-ndjson; charset=latin1" } }),
        415,
        "unsupported-media-type"
      )
    })

    test("an unknown mode is a 400", async () => {
      await expectProblem(await bulk(app(), line(newStream(), 1), { mode: "some" }), 400, "validation")
    })

    test("an empty body stores nothing and says so", async () => {
      const res = await bulk(app(), "")
      expect(res.status).toBe(200)
      expect(await res.json()).toEqual({ received: 0, accepted: 0, rejected: 0, errors: [] })
    })
  })

  describe("codings and limits", () => {
    test("takes gzip, deflate, br and zstd", async () => {
      const stream = newStream()
      const body = Buffer.from(Array.from({ length: 500 }, (_, i) => line(stream, i + 1)).join("\n"))
      for (
        const [coding, f] of Object.entries({
          gzip: gzipSync,
          deflate: deflateSync,
          br: brotliCompressSync,
          zstd: zstdCompressSync
        })
      ) {
        const res = await bulk(app(), f(body), { headers: { "content-encoding": coding } })
        expect(res.status, coding).toBe(200)
        expect(((await res.json()) as BulkResult).accepted).toBe(500)
      }
      expect(await storedIn(app(), stream)).toHaveLength(2000)
    })

    test("a gzip stream cut short is a 400 and stores nothing", async () => {
      const stream = newStream()
      const sent = gzipSync(Buffer.from(Array.from({ length: 500 }, (_, i) => line(stream, i + 1)).join("\n")))
      await expectProblem(
        await bulk(app(), sent.subarray(0, sent.length - 20), { headers: { "content-encoding": "gzip" } }),
        400,
        "malformed-request"
      )
      expect(await storedIn(app(), stream)).toEqual([])
    })

    test("counts MAX_BULK_BYTES decompressed: a bomb is a 413 within a second, stores nothing", async () => {
      const stream = newStream()
      const bomb = gzipSync(
        Buffer.concat([Buffer.from(`${line(stream, 1)}\n`), Buffer.alloc(256 * 1024 * 1024, 0x20)])
      )
      expect(bomb.length).toBeLessThan(1024 * 1024)
      const started = Date.now()
      const problem = await expectProblem(
        await bulk(app(), bomb, { headers: { "content-encoding": "gzip" } }),
        413,
        "payload-too-large"
      )
      expect(Date.now() - started).toBeLessThan(1000)
      expect(problem.detail).toContain("MAX_BULK_BYTES")
      expect(await storedIn(app(), stream)).toEqual([])
    }, 60_000)

    test("more records than MAX_BULK_RECORDS is a 413", async () => {
      const stream = newStream()
      const body = Array.from({ length: 20_001 }, (_, i) => JSON.stringify({ stream, data: { i } })).join("\n")
      await expectProblem(await bulk(app(), body), 413, "payload-too-large")
      expect(await storedIn(app(), stream)).toEqual([])
      // Partial mode writes as it reads: the problem says what the lines before the limit stored.
      const partial = await expectProblem(await bulk(app(), body, { mode: "partial" }), 413, "payload-too-large")
      const stored = (await storedIn(app(), stream)).length
      expect(stored).toBeGreaterThan(0)
      expect(partial.detail).toContain(`the ${stored} records of the lines before it were stored`)
    }, 60_000)
  })

  describe("Idempotency-Key", () => {
    test("a retry replays the answer and stores nothing again; another body is a 422", async () => {
      const stream = newStream()
      const body = Array.from({ length: 1500 }, (_, i) => line(stream, i + 1)).join("\n")
      const headers = { "idempotency-key": `bulk-${stream}` }
      const first = await bulk(app(), body, { mode: "partial", headers })
      expect(first.status).toBe(200)
      const firstBody = await first.text()
      const again = await bulk(app(), body, { mode: "partial", headers })
      expect(again.status).toBe(200)
      expect(again.headers.get("idempotent-replayed")).toBe("true")
      expect(again.headers.get("strata-position")).toBe(first.headers.get("strata-position"))
      expect(await again.text()).toBe(firstBody)
      expect(await storedIn(app(), stream)).toHaveLength(1500)
      await expectProblem(
        await bulk(app(), `${body}\n${line(stream, 0)}`, { mode: "partial", headers }),
        422,
        "idempotency-key-reused"
      )
    }, 60_000)
  })

  describe("stream schemas", () => {
    test("a line that breaks the stream's schema is named with data.<path>", async () => {
      const stream = newStream()
      const put = await app().request(`/streams/${stream}/schema`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          schema: { type: "object", properties: { amount: { type: "number" } }, required: ["amount"] }
        })
      })
      expect(put.status).toBe(201)
      const body = [
        JSON.stringify({ stream, data: { amount: 1 } }),
        JSON.stringify({ stream, data: { amount: "x" } })
      ].join("\n")
      const result = (await (await bulk(app(), body, { mode: "partial" })).json()) as BulkResult
      expect(result).toMatchObject({ accepted: 1, rejected: 1 })
      expect(result.errors).toEqual([expect.objectContaining({ line: 2, path: "data.amount" })])
    })
  })
}

describeBackends(
  "POST /data/bulk",
  [memory, postgres, pglite],
  (db) => acquireApp(() => makeTestApp(db.layer, LIMITS)),
  suite
)

describeBackends(
  "POST /data/bulk over a socket (the Node server's body stream)",
  [memory],
  (db) => acquireApp(() => makeSocketApp(db.layer, LIMITS)),
  suite
)

describe("the OpenAPI document", () => {
  it("describes POST /data/bulk: NDJSON and JSON Lines in, the account of every line out", async () => {
    const app = makeTestApp(memoryDb)
    try {
      const doc = (await (await app.request("/openapi.json", {}, null)).json()) as {
        paths: Record<string, Record<string, any>>
      }
      const operation = doc.paths["/data/bulk"].post
      expect(Object.keys(operation.requestBody.content)).toEqual(["application/x-ndjson", "application/jsonl"])
      expect(operation.parameters.map((p: { name: string }) => p.name)).toEqual(
        expect.arrayContaining(["mode", "idempotency-key"])
      )
      expect(Object.keys(operation.responses)).toEqual(expect.arrayContaining(["200", "400", "413", "415"]))
      expect(operation.description).toContain("mode=partial")
    } finally {
      await app.dispose()
    }
  })
})
