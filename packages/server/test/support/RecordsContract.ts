/**
 * The README's API section for `POST /data`, `POST /data/batch` and `GET /data/{id}`, written once
 * and run on the backends it is given (in memory, PostgreSQL, PGlite), in process or over a socket.
 */
import { describe, expect } from "@effect/vitest"
import {
  acquireApp,
  type Backend,
  batchOf,
  type Db,
  describeBackends,
  expectProblem,
  pageOf,
  recordOf,
  type TestApp
} from "@strata/testing"

const order = {
  stream: "orders",
  key: "customer-42",
  occurredAt: "2026-11-24T10:00:00.000Z",
  data: { amount: 1250, currency: "EUR" }
}

const problem = expectProblem

/** What the OpenAPI test reads of the document: its version and the query parameters of its operations. */
interface OpenApiDoc {
  readonly openapi: string
  readonly paths: Readonly<Record<string, { readonly get?: { readonly parameters: ReadonlyArray<Parameter> } }>>
}

interface Parameter {
  readonly name: string
  readonly schema: { readonly type?: string; readonly maxLength?: number; readonly description?: string }
}

/** `makeApp`: the app on a backend's Db layer, in process or on a socket. */
export const describeRecordsApi = (
  name: string,
  of: ReadonlyArray<Backend<Db>>,
  makeApp: (db: Db) => TestApp | Promise<TestApp>
) =>
  describeBackends(name, of, (db) => acquireApp(() => makeApp(db)), ({ test }) => {
    describe("POST /data", () => {
      test("stores a record and answers 201 with Location and the stored record", async (app) => {
        const res = await app.json("/data", order)
        expect(res.status).toBe(201)
        const body = await recordOf(res)
        expect(res.headers.get("location")).toBe(`/data/${body.id}`)
        expect(body).toMatchObject({
          stream: "orders",
          key: "customer-42",
          occurredAt: order.occurredAt,
          data: order.data
        })
        expect(Date.parse(body.ingestedAt)).toBeGreaterThan(0)
      })

      test("assigns a UUIDv7 id whose time prefix is occurredAt", async (app) => {
        const body = await recordOf(await app.json("/data", order))
        expect(body.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
        const prefix = Number.parseInt(body.id.replaceAll("-", "").slice(0, 12), 16)
        expect(prefix).toBe(Date.parse(order.occurredAt))
      })

      test("defaults occurredAt to the time of ingestion and key to null", async (app) => {
        const before = Date.now()
        const body = await recordOf(await app.json("/data", { stream: "sensor.temp", data: { c: 21.5 } }))
        expect(body.key).toBeNull()
        expect(Date.parse(body.occurredAt)).toBeGreaterThanOrEqual(before - 5)
        expect(Date.parse(body.occurredAt)).toBeLessThanOrEqual(Date.now() + 5)
      })

      test("answers invalid JSON with an invalid-json problem", async (app) => {
        await problem(await app.json("/data", "{\"stream\": "), 400, "invalid-json")
        await problem(await app.json("/data", ""), 400, "invalid-json")
      })

      test("lists every invalid field in one validation problem", async (app) => {
        const body = await problem(
          await app.json("/data", { stream: "Not Valid", occurredAt: "yesterday", data: [1], extra: true }),
          400,
          "validation"
        )
        expect(body.errors?.map((e) => e.path).toSorted()).toEqual(["data", "extra", "occurredAt", "stream"])
      })

      test("rejects a missing stream, a non-object body and an empty key", async (app) => {
        expect((await problem(await app.json("/data", { data: {} }), 400, "validation")).errors).toEqual([
          { path: "stream", message: "is required" }
        ])
        await problem(await app.json("/data", [order]), 400, "validation")
        await problem(await app.json("/data", { ...order, key: "" }), 400, "validation")
      })

      test("rejects occurredAt before 1970 or more than 24 hours ahead", async (app) => {
        await problem(await app.json("/data", { ...order, occurredAt: "1969-12-31T23:59:59Z" }), 400, "validation")
        const future = new Date(Date.now() + 25 * 3600_000).toISOString()
        await problem(await app.json("/data", { ...order, occurredAt: future }), 400, "validation")
        expect((await app.json("/data", { ...order, occurredAt: "1970-01-01T00:00:00Z" })).status).toBe(201)
      })

      test("rejects an occurredAt without a zone", async (app) => {
        await problem(await app.json("/data", { ...order, occurredAt: "2026-11-24T10:00:00" }), 400, "validation")
      })

      test("rejects data nested deeper than 32 levels or holding NUL", async (app) => {
        let deep: Record<string, unknown> = {}
        for (let i = 0; i < 40; i++) deep = { d: deep }
        await problem(await app.json("/data", { stream: "s", data: deep }), 400, "validation")
        await problem(await app.json("/data", { stream: "s", data: { a: "x\u0000y" } }), 400, "validation")
        await problem(await app.json("/data", { stream: "s", data: { a: "\ud800" } }), 400, "validation")
      })

      test("stores __proto__ keys as plain data", async (app) => {
        const res = await app.json("/data", "{\"stream\":\"s\",\"data\":{\"__proto__\":{\"polluted\":true}}}")
        expect(res.status).toBe(201)
        const body = await recordOf(res)
        expect(({} as Record<string, unknown>).polluted).toBeUndefined()
        const again = await (await app.request(`/data/${body.id}`)).text()
        expect(again).toContain("\"__proto__\":{\"polluted\":true}")
      })

      test("answers a record over MAX_RECORD_BYTES with a validation problem", async (app) => {
        const body = await problem(
          await app.json("/data", { stream: "s", data: { blob: "x".repeat(70_000) } }),
          400,
          "validation"
        )
        expect(body.errors?.[0]?.path).toBe("data")
      })

      test("answers a body over MAX_BODY_BYTES with 413", async (app) => {
        await problem(
          await app.json("/data", { stream: "s", data: { blob: "x".repeat(1_100_000) } }),
          413,
          "payload-too-large"
        )
      })

      test("answers a body that is not JSON with 415", async (app) => {
        await problem(
          await app.request("/data", { method: "POST", headers: { "content-type": "text/plain" }, body: "hi" }),
          415,
          "unsupported-media-type"
        )
        await problem(await app.request("/data", { method: "POST", body: "{}" }), 415, "unsupported-media-type")
      })

      test("accepts application/json with a charset", async (app) => {
        const res = await app.json("/data", order, { headers: { "content-type": "application/json; charset=utf-8" } })
        expect(res.status).toBe(201)
      })
    })

    describe("POST /data/batch", () => {
      test("stores every record and answers them in input order", async (app) => {
        const records = Array.from({ length: 5 }, (_, i) => ({ stream: "orders", key: `k${i}`, data: { i } }))
        const res = await app.json("/data/batch", { records })
        expect(res.status).toBe(201)
        const body = await batchOf(res)
        expect(body.records.map((r) => r.key)).toEqual(["k0", "k1", "k2", "k3", "k4"])
        for (const r of body.records) expect((await app.request(`/data/${r.id}`)).status).toBe(200)
      })

      test("names the index of each invalid record and stores none of them", async (app) => {
        const stream = `atomic-${Date.now()}`
        const body = await problem(
          await app.json("/data/batch", {
            records: [{ stream, data: {} }, { stream: "BAD", data: {} }, { stream, occurredAt: "x", data: {} }]
          }),
          400,
          "validation"
        )
        expect(body.errors?.map((e) => e.path)).toEqual(["records[1].stream", "records[2].occurredAt"])
        const page = await pageOf(await app.request(`/data?stream=${stream}`))
        expect(page.records).toEqual([])
      })

      test("rejects an empty batch and one over MAX_BATCH", async (app) => {
        await problem(await app.json("/data/batch", { records: [] }), 400, "validation")
        const tooMany = Array.from({ length: 1001 }, () => ({ stream: "s", data: {} }))
        await problem(await app.json("/data/batch", { records: tooMany }), 400, "validation")
      })
    })

    describe("Idempotency-Key", () => {
      const key = () => `key-${Math.random().toString(36).slice(2)}`

      test("replays the first answer for the same key and body, storing nothing new", async (app) => {
        const k = key()
        const stream = `idem-${k}`
        const first = await app.json("/data", { stream, data: { n: 1 } }, { headers: { "idempotency-key": k } })
        expect(first.status).toBe(201)
        expect(first.headers.get("idempotent-replayed")).toBeNull()
        const again = await app.json("/data", { stream, data: { n: 1 } }, { headers: { "idempotency-key": k } })
        expect(again.status).toBe(201)
        expect(again.headers.get("idempotent-replayed")).toBe("true")
        expect(again.headers.get("location")).toBe(first.headers.get("location"))
        expect(await again.json()).toEqual(await first.json())
        const page = await pageOf(await app.request(`/data?stream=${stream}`))
        expect(page.records).toHaveLength(1)
      })

      test("answers the same key with another body with 422", async (app) => {
        const k = key()
        expect(
          (await app.json("/data", { stream: "idem", data: { n: 1 } }, { headers: { "idempotency-key": k } })).status
        )
          .toBe(201)
        await problem(
          await app.json("/data", { stream: "idem", data: { n: 2 } }, { headers: { "idempotency-key": k } }),
          422,
          "idempotency-key-reused"
        )
      })

      test("runs exactly one of many concurrent requests with one key", async (app) => {
        const k = key()
        const stream = `idem-race-${k}`
        const responses = await Promise.all(Array.from({ length: 20 }, () =>
          app.json("/data/batch", { records: [{ stream, data: {} }] }, { headers: { "idempotency-key": k } })))
        const fresh = responses.filter((r) =>
          r.status === 201 && r.headers.get("idempotent-replayed") === null
        )
        expect(fresh).toHaveLength(1)
        for (const r of responses) expect([201, 409]).toContain(r.status)
        const page = await pageOf(await app.request(`/data?stream=${stream}`))
        expect(page.records).toHaveLength(1)
      })

      test("does not remember a failed request: fixing the body with the same key works", async (app) => {
        const k = key()
        await problem(
          await app.json("/data", { stream: "BAD", data: {} }, { headers: { "idempotency-key": k } }),
          400,
          "validation"
        )
        expect((await app.json("/data", { stream: "good", data: {} }, { headers: { "idempotency-key": k } })).status)
          .toBe(201)
      })

      test("rejects a key that is not 1 to 255 visible ASCII characters", async (app) => {
        await problem(
          await app.json("/data", { stream: "s", data: {} }, { headers: { "idempotency-key": "x".repeat(256) } }),
          400,
          "validation"
        )
        await problem(
          await app.json("/data", { stream: "s", data: {} }, { headers: { "idempotency-key": "has space" } }),
          400,
          "validation"
        )
      })
    })

    describe("GET /data/{id}", () => {
      test("answers the stored record with a strong ETag", async (app) => {
        const stored = await recordOf(await app.json("/data", order))
        const res = await app.request(`/data/${stored.id}`)
        expect(res.status).toBe(200)
        expect(await res.json()).toEqual(stored)
        expect(res.headers.get("etag")).toBe(`"${stored.id}"`)
      })

      test("answers If-None-Match with the ETag with 304", async (app) => {
        const stored = await recordOf(await app.json("/data", order))
        const res = await app.request(`/data/${stored.id}`, { headers: { "if-none-match": `"${stored.id}"` } })
        expect(res.status).toBe(304)
      })

      test("answers an unknown id with a not-found problem", async (app) => {
        await problem(await app.request("/data/019a5f0e-7c4b-7d1e-9a2f-3c4d5e6f7a8b"), 404, "not-found")
        await problem(await app.request("/data/6f1c2f7e-3a4b-4c5d-8e9f-0a1b2c3d4e5f"), 404, "not-found")
      })

      test("answers a malformed id with a validation problem", async (app) => {
        const body = await problem(await app.request("/data/not-a-uuid"), 400, "validation")
        expect(body.errors?.[0]?.path).toBe("id")
      })
    })

    describe("GET /data", () => {
      const seed = async (app: TestApp, stream: string, times: ReadonlyArray<string>, key?: string) => {
        const records = times.map((occurredAt, i) => ({ stream, occurredAt, data: { i }, ...(key ? { key } : {}) }))
        const res = await app.json("/data/batch", { records })
        expect(res.status).toBe(201)
        return (await batchOf(res)).records
      }
      const hours = (n: number) => Array.from({ length: n }, (_, i) => new Date(Date.UTC(2026, 0, 1, i)).toISOString())

      test("answers newest first by default and oldest first with order=asc", async (app) => {
        const stream = `list-order-${Math.random().toString(36).slice(2)}`
        await seed(app, stream, hours(5))
        const desc = await pageOf(await app.request(`/data?stream=${stream}`))
        expect(desc.records.map((r) => r.data.i)).toEqual([4, 3, 2, 1, 0])
        expect(desc.nextCursor).toBeNull()
        const asc = await pageOf(await app.request(`/data?stream=${stream}&order=asc`))
        expect(asc.records.map((r) => r.data.i)).toEqual([0, 1, 2, 3, 4])
      })

      test("treats from/to as the half-open range [from, to)", async (app) => {
        const stream = `list-range-${Math.random().toString(36).slice(2)}`
        await seed(app, stream, hours(6))
        const page = await pageOf(
          await app.request(`/data?stream=${stream}&order=asc&from=2026-01-01T01:00:00Z&to=2026-01-01T04:00:00Z`)
        )
        expect(page.records.map((r) => r.data.i)).toEqual([1, 2, 3])
      })

      test("filters by key", async (app) => {
        const stream = `list-key-${Math.random().toString(36).slice(2)}`
        await seed(app, stream, hours(2), "a")
        await seed(app, stream, hours(3), "b")
        const page = await pageOf(await app.request(`/data?stream=${stream}&key=b`))
        expect(page.records).toHaveLength(3)
        expect(page.records.every((r) => r.key === "b")).toBe(true)
      })

      test("pages with cursors, seeing every record exactly once, also when the same instant repeats", async (app) => {
        const stream = `list-pages-${Math.random().toString(36).slice(2)}`
        const same = Array.from({ length: 7 }, () => "2026-02-01T00:00:00.000Z")
        const stored = await seed(app, stream, [...hours(8), ...same])
        const seen: Array<string> = []
        let cursor: string | null = null
        do {
          const q: string = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`
          const page = await pageOf(await app.request(`/data?stream=${stream}&limit=4${q}`))
          expect(page.records.length).toBeLessThanOrEqual(4)
          seen.push(...page.records.map((r) => r.id))
          cursor = page.nextCursor
        } while (cursor !== null)
        expect(seen.toSorted()).toEqual(stored.map((r) => r.id).toSorted())
        expect(new Set(seen).size).toBe(seen.length)
      })

      test("keeps pages stable while new records arrive", async (app) => {
        const stream = `list-live-${Math.random().toString(36).slice(2)}`
        const stored = await seed(app, stream, hours(10))
        const first = await pageOf(await app.request(`/data?stream=${stream}&limit=5&order=asc`))
        // newer and older arrivals while the client pages
        await seed(app, stream, ["2026-06-01T00:00:00Z", "2026-06-02T00:00:00Z"])
        const second = await pageOf(
          await app.request(`/data?stream=${stream}&limit=5&order=asc&cursor=${encodeURIComponent(first.nextCursor!)}`)
        )
        expect([...first.records, ...second.records].map((r) => r.id)).toEqual(stored.map((r) => r.id))
      })

      test("rejects a cursor that was tampered with or belongs to another query", async (app) => {
        const stream = `list-cursor-${Math.random().toString(36).slice(2)}`
        await seed(app, stream, hours(3))
        const page = await pageOf(await app.request(`/data?stream=${stream}&limit=1`))
        const cursor = page.nextCursor!
        // A character in the middle: the last one of base64 may carry unused bits only.
        const tampered = cursor.slice(0, 5) + (cursor[5] === "A" ? "B" : "A") + cursor.slice(6)
        await problem(
          await app.request(`/data?stream=${stream}&cursor=${encodeURIComponent(tampered)}`),
          400,
          "validation"
        )
        await problem(await app.request(`/data?stream=other&cursor=${encodeURIComponent(cursor)}`), 400, "validation")
        await problem(
          await app.request(`/data?stream=${stream}&order=asc&cursor=${encodeURIComponent(cursor)}`),
          400,
          "validation"
        )
        await problem(await app.request(`/data?stream=${stream}&cursor=garbage`), 400, "validation")
      })

      test("rejects bad parameters with a validation problem naming each", async (app) => {
        const body = await problem(await app.request("/data?stream=BAD&limit=0&from=yesterday"), 400, "validation")
        expect(body.errors?.map((e) => e.path).toSorted()).toEqual(["from", "limit", "stream"])
        await problem(await app.request("/data"), 400, "validation")
        await problem(await app.request("/data?stream=s&limit=1001"), 400, "validation")
        await problem(await app.request("/data?stream=s&order=sideways"), 400, "validation")
        await problem(
          await app.request("/data?stream=s&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"),
          400,
          "validation"
        )
      })
    })

    describe("request ids", () => {
      test("echoes a sane X-Request-Id and replaces an insane one", async (app) => {
        const mine = await app.request("/health/live", { headers: { "x-request-id": "abc-123" } })
        expect(mine.headers.get("x-request-id")).toBe("abc-123")
        const bad = await app.request("/health/live", { headers: { "x-request-id": "a b\u00e9".repeat(50) } })
        expect(bad.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
      })

      test("answers an unknown route with a not-found problem", async (app) => {
        await problem(await app.request("/nope"), 404, "not-found")
      })
    })

    describe("operations", () => {
      test("GET /health/live and /health/ready answer 200 with each dependency", async (app) => {
        expect((await app.request("/health/live")).status).toBe(200)
        const ready = await app.request("/health/ready")
        expect(ready.status).toBe(200)
        expect(await ready.json()).toEqual({
          status: "up",
          dependencies: { database: "up", cache: "up", server: "up" }
        })
      })

      test("GET /openapi.json is OpenAPI 3.1 and lists every route and problem type", async (app) => {
        const doc = (await (await app.request("/openapi.json")).json()) as OpenApiDoc
        expect(doc.openapi).toBe("3.1.0")
        expect(Object.keys(doc.paths).toSorted()).toEqual([
          "/admin/keys/{id}/revoke",
          "/admin/tenants",
          "/admin/tenants/{tenant}/keys",
          "/changes",
          "/data",
          "/data/batch",
          "/data/bulk",
          "/data/{id}",
          "/health/live",
          "/health/ready",
          "/streams",
          "/streams/{stream}/changes",
          "/streams/{stream}/indexes",
          "/streams/{stream}/schema",
          "/streams/{stream}/schema/check",
          "/streams/{stream}/schema/versions",
          "/streams/{stream}/schema/versions/{version}"
        ])
        // The list query's bounds are in the document, so clients know them.
        const params = doc.paths["/data"].get!.parameters
        const schemaOf = (name: string) => params.find((p) => p.name === name)?.schema
        expect(schemaOf("limit")).toMatchObject({ type: "string", maxLength: 4 })
        expect(schemaOf("limit")?.description).toContain("from 1 to 1000")
        expect(schemaOf("from")?.description).toContain("ISO 8601 date-time with a zone")
        const text = JSON.stringify(doc)
        for (
          const type of [
            "invalid-json",
            "validation",
            "payload-too-large",
            "unsupported-media-type",
            "not-found",
            "unavailable",
            "invalid-schema",
            "schema-incompatible",
            "conflict",
            "position-expired"
          ]
        ) {
          expect(text).toContain(`/problems/${type}`)
        }
      })

      test("GET /metrics reports request durations by route template and status class, and write batch sizes", async (app) => {
        await app.request("/data/019a5f0e-7c4b-7d1e-9a2f-3c4d5e6f7a8b")
        await app.json("/data", order)
        const res = await app.request("/metrics")
        expect(res.status).toBe(200)
        const text = await res.text()
        expect(text).toMatch(
          /http_server_request_duration_seconds_bucket\{[^}]*route="\/data\/\{id\}"[^}]*status_class="4xx"/
        )
        expect(text).toMatch(
          /http_server_request_duration_seconds_count\{[^}]*method="POST"[^}]*route="\/data"[^}]*status_class="2xx"/
        )
        expect(text).toMatch(/strata_write_batch_records_count \d+/)
        expect(text).not.toContain("019a5f0e") // never the raw path
      })

      test("GET /docs serves a page to read the API", async (app) => {
        const res = await app.request("/docs")
        expect(res.status).toBe(200)
        expect(res.headers.get("content-type")).toContain("text/html")
      })
    })
  })
