/**
 * README: Schemas, stream schemas, written once and run against every Db layer (in
 * memory, PostgreSQL, PGlite) and over a socket with the hot routes in front.
 * Each test uses its own stream, so the suite's tests do not see each other.
 */
import { expect } from "@effect/vitest"
import {
  acquireApp,
  type Backend,
  batchOf,
  type Db,
  describeBackends,
  expectProblem,
  pageOf,
  recordOf,
  schemaCheckOf,
  schemaVersionsOf,
  streamListOf,
  streamSchemaOf,
  type TestApp
} from "@strata/testing"
import { randomBytes } from "node:crypto"

const problem = expectProblem

const freshStream = () => `s-${randomBytes(4).toString("hex")}`

const orderSchema = {
  type: "object",
  properties: { amount: { type: "number", minimum: 0 }, currency: { type: "string", pattern: "^[A-Z]{3}$" } },
  required: ["amount"]
}

export const put = (app: TestApp, stream: string, body: unknown, key?: string | null) =>
  app.json(`/streams/${stream}/schema`, body, { method: "PUT" }, key)

/** `makeApp`: the app on a backend's Db layer, in process or on a socket. */
export const describeSchemasApi = (
  name: string,
  of: ReadonlyArray<Backend<Db>>,
  makeApp: (db: Db) => TestApp | Promise<TestApp>
) =>
  describeBackends(name, of, (db) => acquireApp(() => makeApp(db)), ({ test }) => {
    test("registers versions 1, 2…; the current schema again is a 200 no-op; reads each version", async (app) => {
      const stream = freshStream()
      const first = await put(app, stream, { schema: orderSchema })
      expect(first.status).toBe(201)
      const v1 = await streamSchemaOf(first)
      expect(v1).toMatchObject({ stream, version: 1, schema: orderSchema, compatibility: "none" })
      expect(Date.parse(v1.createdAt)).toBeGreaterThan(0)

      const again = await put(app, stream, { schema: orderSchema })
      expect(again.status).toBe(200)
      expect(await again.json()).toEqual(v1)

      const second = await put(app, stream, { schema: { ...orderSchema, required: ["amount", "currency"] } })
      expect(second.status).toBe(201)
      expect((await streamSchemaOf(second)).version).toBe(2)

      const current = await streamSchemaOf(await app.request(`/streams/${stream}/schema`))
      expect(current.version).toBe(2)
      const versions = await schemaVersionsOf(await app.request(`/streams/${stream}/schema/versions`))
      expect(versions.versions.map((v) => v.version)).toEqual([1, 2])
      expect(await (await app.request(`/streams/${stream}/schema/versions/1`)).json()).toEqual(v1)
      await problem(await app.request(`/streams/${stream}/schema/versions/3`), 404, "not-found")
      await problem(await app.request(`/streams/${stream}/schema/versions/zero`), 400, "validation")
      await problem(await app.request(`/streams/${freshStream()}/schema`), 404, "not-found")

      const listed = await streamListOf(await app.request("/streams"))
      expect(listed.streams).toContainEqual({ stream, version: 2, createdAt: current.createdAt })
    })

    test("validates POST /data against the current schema: errors name data.<path>, keyword and version", async (app) => {
      const stream = freshStream()
      await put(app, stream, { schema: orderSchema })
      const bad = await problem(
        await app.json("/data", { stream, data: { amount: "12", currency: "EUR" } }),
        400,
        "validation"
      )
      expect(bad.errors).toEqual([
        { path: "data.amount", message: "must be number", keyword: "type", schemaVersion: 1 }
      ])
      const missing = await problem(await app.json("/data", { stream, data: { currency: "EUR" } }), 400, "validation")
      expect(missing.errors?.[0]).toMatchObject({ path: "data.amount", keyword: "required", schemaVersion: 1 })
      const pattern = await problem(
        await app.json("/data", { stream, data: { amount: 1, currency: "euro" } }),
        400,
        "validation"
      )
      expect(pattern.errors?.[0]).toMatchObject({ path: "data.currency", keyword: "pattern" })

      const ok = await app.json("/data", { stream, data: { amount: 12.5, currency: "EUR" } })
      expect(ok.status).toBe(201)
      const stored = await recordOf(ok)
      expect(stored.schemaVersion).toBe(1)
      const read = await recordOf(await app.request(`/data/${stored.id}`))
      expect(read.schemaVersion).toBe(1)
      const page = await pageOf(await app.request(`/data?stream=${stream}`))
      expect(page.records.map((r) => r.schemaVersion)).toEqual([1])
    })

    test("a record of a stream without a schema has schemaVersion null", async (app) => {
      const res = await app.json("/data", { stream: freshStream(), data: { anything: true } })
      expect(res.status).toBe(201)
      expect((await recordOf(res)).schemaVersion).toBeNull()
    })

    test("a batch with one bad record stores nothing and names records[i].data.<path>", async (app) => {
      const stream = freshStream()
      await put(app, stream, { schema: orderSchema })
      const body = await problem(
        await app.json("/data/batch", {
          records: [
            { stream, data: { amount: 1 } },
            { stream, data: { amount: 2 } },
            { stream: freshStream(), data: { free: "form" } },
            { stream, data: { amount: -1 } }
          ]
        }),
        400,
        "validation"
      )
      expect(body.errors).toEqual([
        { path: "records[3].data.amount", message: "must be >= 0", keyword: "minimum", schemaVersion: 1 }
      ])
      expect((await pageOf(await app.request(`/data?stream=${stream}`))).records).toEqual([])
      const good = await app.json("/data/batch", {
        records: [{ stream, data: { amount: 1 } }, { stream: freshStream(), data: {} }]
      })
      expect(good.status).toBe(201)
      expect((await batchOf(good)).records.map((r) => r.schemaVersion)).toEqual([1, null])
    })

    test("numbers kept exactly still validate as numbers, against their exact value", async (app) => {
      const stream = freshStream()
      await put(app, stream, {
        schema: { type: "object", properties: { n: { type: "number", maximum: 1e21 }, i: { type: "integer" } } }
      })
      const exact = await app.json(
        "/data",
        `{"stream":"${stream}","data":{"n":12345678901234567890,"i":9007199254740993}}`
      )
      expect(exact.status).toBe(201)
      const text = await exact.text()
      expect(text).toContain(`"n":12345678901234567890`)
      expect(text).toContain(`"i":9007199254740993`)
      const tooBig = await app.json("/data", `{"stream":"${stream}","data":{"n":12345678901234567890123}}`)
      expect((await problem(tooBig, 400, "validation")).errors?.[0]).toMatchObject({
        path: "data.n",
        keyword: "maximum"
      })
    })

    test("check counts the recent records that pass a candidate and lists the failures; stores nothing", async (app) => {
      const stream = freshStream()
      for (const data of [{ amount: 1 }, { amount: 2, currency: "EUR" }, { amount: "x" }]) {
        expect((await app.json("/data", { stream, data })).status).toBe(201)
      }
      const res = await app.json(`/streams/${stream}/schema/check`, { schema: orderSchema })
      expect(res.status).toBe(200)
      const result = await schemaCheckOf(res)
      expect(result).toMatchObject({ checked: 3, passed: 2, failed: 1 })
      expect(result.errors).toHaveLength(1)
      expect(result.errors[0]).toMatchObject({ path: "data.amount", keyword: "type" })
      expect(result.errors[0].recordId).toMatch(/^[0-9a-f-]{36}$/)
      await problem(await app.request(`/streams/${stream}/schema`), 404, "not-found")
    })

    test("compatibility backward refuses a schema recent records fail (409), none registers it", async (app) => {
      const stream = freshStream()
      await app.json("/data", { stream, data: { amount: "not a number" } })
      const refused = await problem(
        await put(app, stream, { schema: orderSchema, compatibility: "backward" }),
        409,
        "schema-incompatible"
      )
      expect(refused.errors?.[0]).toMatchObject({ path: "data.amount", keyword: "type" })
      await problem(await app.request(`/streams/${stream}/schema`), 404, "not-found")
      const loose = { type: "object", properties: { amount: { type: ["number", "string"] } } }
      expect((await put(app, stream, { schema: loose, compatibility: "backward" })).status).toBe(201)
      const forced = await put(app, stream, { schema: orderSchema, compatibility: "none" })
      expect(forced.status).toBe(201)
      expect(await streamSchemaOf(forced)).toMatchObject({ version: 2, compatibility: "none" })
    })

    test("another tenant neither sees a schema nor is validated by it", async (app) => {
      const stream = freshStream()
      await put(app, stream, { schema: orderSchema })
      const other = await app.createKey({ tenant: `other-${randomBytes(3).toString("hex")}` })
      await problem(await app.request(`/streams/${stream}/schema`, undefined, other), 404, "not-found")
      expect((await streamListOf(await app.request("/streams", undefined, other))).streams).toEqual([])
      const res = await app.json("/data", { stream, data: { amount: "free" } }, {}, other)
      expect(res.status).toBe(201)
      expect((await recordOf(res)).schemaVersion).toBeNull()
    })

    test("registering needs schemas:write; reading needs records:read", async (app) => {
      const stream = freshStream()
      const reader = await app.createKey({ scopes: ["records:read", "records:write"] })
      await problem(await put(app, stream, { schema: orderSchema }, reader), 403, "forbidden")
      await problem(await put(app, stream, { schema: orderSchema }, null), 401, "unauthorized")
      const registrar = await app.createKey({ scopes: ["schemas:write"] })
      expect((await put(app, stream, { schema: orderSchema }, registrar)).status).toBe(201)
      await problem(await app.request(`/streams/${stream}/schema`, undefined, registrar), 403, "forbidden")
      expect((await app.request(`/streams/${stream}/schema`, undefined, reader)).status).toBe(200)
    })

    test("bad bodies are 4xx problems: invalid JSON, no schema, a schema that is not an object", async (app) => {
      const stream = freshStream()
      await problem(await put(app, stream, "{"), 400, "invalid-json")
      await problem(await put(app, stream, { compatibility: "none" }), 400, "validation")
      await problem(await put(app, stream, { schema: [] }), 400, "validation")
      await problem(await put(app, stream, { schema: {}, compatibility: "forward" }), 400, "validation")
      await problem(
        await app.request(`/streams/${stream}/schema`, { method: "PUT", body: "{}" }),
        415,
        "unsupported-media-type"
      )
    })
  })
