/**
 * The hot routes (src/http/HotRoutes.ts) answer a cached read and a plain write
 * themselves; the HttpApi app answers everything else. What a client gets must
 * not depend on which one answered: the same status, headers and body.
 * A fresh key is not verified yet, so its first requests go through the app;
 * once verified (and the record cached) the same requests take the hot routes.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { makeSocketApp, memoryDb, startOtlpReceiver, type TestApp } from "@strata/testing"
import { Duration, Effect, Option } from "effect"
import { request } from "node:http"
import { makeRecordId } from "../src/records/RecordId.ts"
import { RecordStore } from "../src/records/RecordStore.ts"

/** Status, headers (without the ones that differ per response) and body. */
const POSITION = /^[\w-]{8}\.[0-9a-f]+\.[0-9a-f]+\.[\w-]{16}$/

const shape = async (res: Response) => {
  const headers = Object.fromEntries(
    [...res.headers]
      .filter(([name]) => !["date", "x-request-id", "ratelimit", "location"].includes(name))
      // Each write has its own position: both paths must send one.
      .map(([name, value]) => [name, name === "strata-position" && POSITION.test(value) ? "<position>" : value])
  )
  const text = await res.text()
  return { status: res.status, headers, body: text === "" ? text : JSON.parse(text) }
}

describe("hot routes and the app answer alike", () => {
  let app: TestApp
  beforeAll(async () => {
    app = await makeSocketApp(memoryDb)
  })
  afterAll(() => app.dispose())

  /** A record stored straight into the RecordStore, so no cache level holds it. */
  const stored = () =>
    app.run(Effect.map(
      RecordStore.use((db) =>
        db.insert([{
          tenant: "test",
          id: makeRecordId(Date.now()),
          stream: "hot",
          key: null,
          occurredAt: new Date(),
          data: { n: 1 },
          dataText: JSON.stringify({ n: 1 }),
          traceparent: null,
          schemaVersion: null
        }])
      ),
      ({ records: [record] }) => record.id
    ))

  /** Runs `send` twice with a fresh key: first through the app, then through the hot routes. */
  const bothWays = async (send: (key: string) => Promise<Response>, tenant = "test") => {
    const key = await app.createKey({ tenant, rateLimit: { rps: 1e6, burst: 1e6 } })
    const before = app.hotAnswered!()
    const viaApp = await send(key)
    expect(app.hotAnswered!()).toBe(before)
    const viaHot = await send(key)
    expect(app.hotAnswered!()).toBe(before + 1)
    return [viaApp, viaHot] as const
  }

  it("a cached read: 200 with the record, its ETag, Cache-Status and rate-limit headers", async () => {
    const body = `{"stream":"hot","key":"k","data":{"n":12345678901234567890}}`
    const created = await (await app.json("/data", body)).json() as { id: string }
    const [viaApp, viaHot] = await bothWays((key) => app.request(`/data/${created.id}`, undefined, key))
    const [a, h] = [await shape(viaApp), await shape(viaHot)]
    expect(h).toEqual(a)
    expect(h.status).toBe(200)
    expect(h.headers["cache-status"]).toBe("strata; hit")
    expect(viaHot.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
  })

  it("a cached read with a matching If-None-Match: 304 with the same headers", async () => {
    const created = await (await app.json("/data", { stream: "hot", data: {} })).json() as { id: string }
    const init = { headers: { "if-none-match": `"${created.id}"` } }
    const [viaApp, viaHot] = await bothWays((key) => app.request(`/data/${created.id}`, init, key))
    expect(await shape(viaHot)).toEqual(await shape(viaApp))
    expect(viaHot.status).toBe(304)
  })

  it("a plain write: 201 with Location and the stored record", async () => {
    const [viaApp, viaHot] = await bothWays((key) =>
      app.json("/data", { stream: "hot", key: "w", occurredAt: "2026-01-01T00:00:00Z", data: { x: [1, "2"] } }, {}, key)
    )
    const [a, h] = [await shape(viaApp), await shape(viaHot)]
    expect({ ...h, body: { ...h.body, id: "", ingestedAt: "" } }).toEqual({
      ...a,
      body: { ...a.body, id: "", ingestedAt: "" }
    })
    expect(h.status).toBe(201)
    expect(viaHot.headers.get("location")).toBe(`/data/${h.body.id}`)
    expect(h.headers["strata-position"]).toBe("<position>")
  })

  it("keeps the client's X-Request-Id on both paths", async () => {
    const created = await (await app.json("/data", { stream: "hot", data: {} })).json() as { id: string }
    const init = { headers: { "x-request-id": "client-id-42" } }
    const [viaApp, viaHot] = await bothWays((key) => app.request(`/data/${created.id}`, init, key))
    expect(viaApp.headers.get("x-request-id")).toBe("client-id-42")
    expect(viaHot.headers.get("x-request-id")).toBe("client-id-42")
  })

  it("hands a write it cannot store plainly to the app, which answers with its problem", async () => {
    await app.json("/data", { stream: "hot", data: {} }) // the default key is verified now
    const before = app.hotAnswered!()
    const res = await app.json("/data", { stream: "Not Valid", data: {} })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { type: string }).type).toBe("/problems/validation")
    const inexact = await app.json("/data", "{\"stream\":\"s\",\"data\":{\"n\":1e999999}}")
    expect(((await inexact.json()) as { errors: Array<{ path: string }> }).errors[0].path).toBe("data.n")
    expect(app.hotAnswered!()).toBe(before)
  })

  it("an uncached read: 200 read through the cache, with Cache-Status fwd=miss", async () => {
    const [first, second] = [await stored(), await stored()]
    const key = await app.createKey({ rateLimit: { rps: 1e6, burst: 1e6 } })
    const before = app.hotAnswered!()
    const viaApp = await shape(await app.request(`/data/${first}`, undefined, key))
    const viaHot = await shape(await app.request(`/data/${second}`, undefined, key))
    expect(app.hotAnswered!()).toBe(before + 1)
    expect(viaHot.headers["cache-status"]).toBe("strata; fwd=miss")
    const same = (s: typeof viaApp) => ({
      ...s,
      headers: { ...s.headers, etag: "" },
      body: { ...s.body, id: "", occurredAt: "", ingestedAt: "" }
    })
    expect(same(viaHot)).toEqual(same(viaApp))
  })

  it("another tenant's record, or none: the same 404 problem", async () => {
    const created = await (await app.json("/data", { stream: "hot", data: {} })).json() as { id: string }
    const [viaApp, viaHot] = await bothWays(async (key) => {
      await app.createKey({ tenant: "other" })
      return app.request(`/data/${created.id}`, undefined, key)
    }, "other")
    const [a, h] = [await shape(viaApp), await shape(viaHot)]
    expect({ ...h, body: { ...h.body, requestId: "" } }).toEqual({ ...a, body: { ...a.body, requestId: "" } })
    expect(h.status).toBe(404)
    expect(h.body.type).toBe("/problems/not-found")
  })

  it("leaves an unknown key or a missing scope to the app", async () => {
    const created = await (await app.json("/data", { stream: "hot", data: {} })).json() as { id: string }
    const before = app.hotAnswered!()
    expect((await app.request(`/data/${created.id}`, undefined, "strata_" + "x".repeat(43))).status).toBe(401)
    const writer = await app.createKey({ scopes: ["records:write"] })
    expect((await app.request(`/data/${created.id}`, undefined, writer)).status).toBe(403)
    expect((await app.request(`/data/${created.id}`, undefined, writer)).status).toBe(403)
    expect(app.hotAnswered!()).toBe(before)
  })
})

describe("hot routes with tracing on", () => {
  let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>
  beforeAll(async () => {
    receiver = await startOtlpReceiver()
  })
  afterAll(() => receiver?.close())

  /** A socket app exporting to the receiver with `ratio`; disposing of it flushes the spans. */
  const tracedApp = (ratio: number) =>
    makeSocketApp(memoryDb, {
      otlpEndpoint: Option.some(receiver.url),
      otlpProtocol: "http/json",
      tracesSampler: "parentbased_traceidratio",
      tracesSamplerArg: ratio
    })

  it("answers requests that start an unsampled trace itself, and exports nothing for them", async () => {
    const app = await tracedApp(0)
    receiver.spans.length = 0
    try {
      await app.json("/data", { stream: "traced", data: {} }) // verifies the key (through the app)
      const before = app.hotAnswered!()
      const created = await (await app.json("/data", { stream: "traced", data: {} })).json() as { id: string }
      expect((await app.request(`/data/${created.id}`)).status).toBe(200)
      expect(app.hotAnswered!()).toBe(before + 2)
    } finally {
      await app.dispose()
    }
    expect(receiver.spans.filter((s) => s.kind === 2)).toEqual([])
  })

  it("leaves sampled requests to the app, whose spans are exported", async () => {
    const app = await tracedApp(1)
    receiver.spans.length = 0
    let id = ""
    try {
      await app.json("/data", { stream: "traced", data: {} })
      const before = app.hotAnswered!()
      id = ((await (await app.json("/data", { stream: "traced", data: {} })).json()) as { id: string }).id
      expect((await app.request(`/data/${id}`)).status).toBe(200)
      expect(app.hotAnswered!()).toBe(before)
    } finally {
      await app.dispose()
    }
    const server = receiver.spans.filter((s) => s.kind === 2).map((s) => s.name)
    expect(server).toContain("POST /data")
    expect(server).toContain("GET /data/{id}")
  })

  it("leaves a request whose caller's trace is sampled to the app, even at ratio 0", async () => {
    const app = await tracedApp(0)
    receiver.spans.length = 0
    const caller = "4bf92f3577b34da6a3ce929d0e0e4736"
    try {
      await app.json("/data", { stream: "traced", data: {} })
      const before = app.hotAnswered!()
      const res = await app.json("/data", { stream: "traced", data: {} }, {
        headers: { traceparent: `00-${caller}-00f067aa0ba902b7-01` }
      })
      expect(res.status).toBe(201)
      expect(app.hotAnswered!()).toBe(before)
    } finally {
      await app.dispose()
    }
    expect(receiver.spans.some((s) => s.kind === 2 && s.traceId === caller)).toBe(true)
  })
})

describe("a hot write whose body does not arrive in time", () => {
  it("is answered 503 after REQUEST_TIMEOUT, as the app answers, and frees its place", async () => {
    const app = await makeSocketApp(memoryDb, { requestTimeout: Duration.millis(300), maxInFlight: 1 })
    try {
      await app.json("/data", { stream: "slow", data: {} }) // verifies the default key
      const key = await app.createKey({ rateLimit: { rps: 1e6, burst: 1e6 } })
      await app.json("/data", { stream: "slow", data: {} }, {}, key)
      const base = (await app.request("/health/live")).url.replace(/\/health\/live$/, "")
      const started = Date.now()
      const status = await new Promise<number>((resolve, reject) => {
        const req = request(`${base}/data`, {
          method: "POST",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "content-length": "100" }
        }, (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
          req.destroy()
        })
        req.on("error", reject)
        req.write(`{"stream":"slow",`) // and never the rest
      })
      expect(status).toBe(503)
      expect(Date.now() - started).toBeLessThan(5_000)
      // MAX_IN_FLIGHT is 1: the place was given back, so the next write is served.
      expect((await app.json("/data", { stream: "slow", data: {} }, {}, key)).status).toBe(201)
    } finally {
      await app.dispose()
    }
  })
})
