/**
 * README, Input limits: bad input of any shape gets a 4xx problem, never a 500, never a
 * crash, and stores nothing. Run against the in-memory Db and a real
 * PostgreSQL, whose jsonb and text columns refuse what JavaScript strings may
 * hold (NUL, unpaired surrogates).
 */
import { describe, expect, it } from "@effect/vitest"
import {
  acquireApp,
  describeBackends,
  expectProblem,
  makeTestApp,
  memory,
  memoryDb,
  postgres,
  type TestApp
} from "@strata/testing"

const deep = (levels: number, inner = "1") => "[".repeat(levels) + inner + "]".repeat(levels)

describeBackends(
  "hostile input",
  [memory, postgres],
  (db) => acquireApp(() => makeTestApp(db.layer)),
  ({ test: appTest }) => {
    /** Each test writes to a stream of its own. */
    const test = (title: string, f: (app: TestApp, stream: string) => Promise<void>) =>
      appTest(title, (app) => f(app, `hostile-${Math.random().toString(36).slice(2)}`))
    const storedIn = async (app: TestApp, stream: string) =>
      ((await (await app.request(`/data?stream=${stream}`)).json()) as { records: Array<unknown> }).records

    describe("strings PostgreSQL cannot store", () => {
      // Written as JSON escapes, as a client would send them.
      const bad = ["\\u0000", "a\\u0000b", "\\ud800", "x\\udfffy", "\\ude00\\ud83d"]

      test("a NUL or an unpaired surrogate in a data value or key is a validation problem", async (app, stream) => {
        for (const s of bad) {
          await expectProblem(await app.json("/data", `{"stream":"${stream}","data":{"v":"${s}"}}`), 400, "validation")
          await expectProblem(await app.json("/data", `{"stream":"${stream}","data":{"${s}":1}}`), 400, "validation")
          await expectProblem(
            await app.json("/data", `{"stream":"${stream}","data":{"a":[{"b":["${s}"]}]}}`),
            400,
            "validation"
          )
        }
        expect(await storedIn(app, stream)).toEqual([])
      })

      test("a NUL or an unpaired surrogate in the key is a validation problem naming it", async (app, stream) => {
        for (const s of bad) {
          const body = await expectProblem(
            await app.json("/data", `{"stream":"${stream}","key":"${s}","data":{}}`),
            400,
            "validation"
          )
          expect(body.errors).toEqual([{ path: "key", message: "must not contain NUL or unpaired surrogates" }])
          await expectProblem(await app.request(`/data?stream=${stream}&key=%00`), 400, "validation")
        }
        expect(await storedIn(app, stream)).toEqual([])
      })

      test("one such record fails its whole batch, which stores nothing", async (app, stream) => {
        const body = await expectProblem(
          await app.json(
            "/data/batch",
            `{"records":[{"stream":"${stream}","data":{}},{"stream":"${stream}","data":{"v":"\\u0000"}}]}`
          ),
          400,
          "validation"
        )
        expect(body.errors?.map((e) => e.path)).toEqual(["records[1].data"])
        expect(await storedIn(app, stream)).toEqual([])
      })

      test("paired surrogates and other unusual text are stored and read back unchanged", async (app, stream) => {
        const data = {
          emoji: "\ud83d\ude00",
          rtl: "\u202eabc",
          bom: "\ufeff",
          ctrl: "\u0001\u001f",
          "\ud83d\udd11": "key"
        }
        const res = await app.json("/data", { stream, key: "\ud83d\ude00", data })
        expect(res.status).toBe(201)
        const stored = await res.json() as { id: string }
        const again = await (await app.request(`/data/${stored.id}`)).json()
        expect(again).toMatchObject({ key: "\ud83d\ude00", data })
      })
    })

    describe("nesting", () => {
      test("100,000 levels anywhere in the body are a problem, not a crash", async (app, stream) => {
        await expectProblem(
          await app.json("/data", `{"stream":"${stream}","data":{"a":${deep(100_000)}}}`),
          400,
          "validation"
        )
        await expectProblem(
          await app.json("/data", `{"stream":"${stream}","data":{},"x":${deep(100_000)}}`),
          400,
          "validation"
        )
        await expectProblem(await app.json("/data", deep(100_000)), 400, "validation")
        await expectProblem(await app.json("/data/batch", `{"records":[${deep(100_000)}]}`), 400, "validation")
        expect(await storedIn(app, stream)).toEqual([])
        expect((await app.request("/health/live")).status).toBe(200)
      })

      test("data nested exactly 32 levels deep is stored", async (app, stream) => {
        let data: Record<string, unknown> = { leaf: true }
        for (let i = 1; i < 32; i++) data = { d: data }
        expect((await app.json("/data", { stream, data })).status).toBe(201)
        data = { d: data }
        await expectProblem(await app.json("/data", { stream, data }), 400, "validation")
      })
    })

    describe("prototype keys", () => {
      test("__proto__, constructor and prototype inside data are stored as plain data", async (app, stream) => {
        const text =
          `{"stream":"${stream}","data":{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":2}},"list":[{"__proto__":null}]}}`
        const res = await app.json("/data", text)
        expect(res.status).toBe(201)
        const { id } = await res.json() as { id: string }
        const again = JSON.parse(await (await app.request(`/data/${id}`)).text())
        // JSON.parse makes "__proto__" an own property, as the server must have kept it.
        expect(again.data).toEqual(JSON.parse(text).data)
        expect(Object.keys(again.data).toSorted()).toEqual(["__proto__", "constructor", "list"])
        expect(Object.getPrototypeOf(again.data)).toBe(Object.prototype)
        expect(({} as Record<string, unknown>).polluted).toBeUndefined()
        expect(Object.prototype).not.toHaveProperty("polluted")
      })

      test("in a batch too", async (app, stream) => {
        const res = await app.json("/data/batch", `{"records":[{"stream":"${stream}","data":{"__proto__":{"x":1}}}]}`)
        expect(res.status).toBe(201)
        const [stored] = (await storedIn(app, stream)) as Array<{ data: object }>
        expect(Object.keys(stored!.data)).toEqual(["__proto__"])
        expect(({} as Record<string, unknown>).x).toBeUndefined()
      })

      test("at the top level of a body they are unknown fields", async (app, stream) => {
        for (const key of ["__proto__", "constructor", "prototype"]) {
          const body = await expectProblem(
            await app.json("/data", `{"stream":"${stream}","data":{},"${key}":{"stream":"x"}}`),
            400,
            "validation"
          )
          expect(body.errors).toEqual([{ path: key, message: "is not a known field" }])
          await expectProblem(await app.json("/data/batch", `{"records":[],"${key}":{}}`), 400, "validation")
        }
        expect(await storedIn(app, stream)).toEqual([])
      })

      test("in a query string they are ignored like any unknown parameter", async (app, stream) => {
        const res = await app.request(`/data?stream=${stream}&__proto__=1&constructor=2&prototype=3&__proto__[x]=4`)
        expect(res.status).toBe(200)
        expect(await res.json()).toEqual({ records: [], nextCursor: null })
        expect(Object.prototype).not.toHaveProperty("x")
      })
    })

    describe("bodies", () => {
      test("a body declared in a charset other than UTF-8 is a 415", async (app, stream) => {
        for (const charset of ["iso-8859-1", "\"utf-16\"", "latin1"]) {
          await expectProblem(
            await app.json("/data", { stream, data: {} }, {
              headers: { "content-type": `application/json; charset=${charset}` }
            }),
            415,
            "unsupported-media-type"
          )
        }
        const res = await app.json("/data", { stream, data: {} }, {
          headers: { "content-type": "application/json; charset=\"UTF-8\"" }
        })
        expect(res.status).toBe(201)
      })

      test("a body that is not UTF-8 is invalid JSON", async (app) => {
        await expectProblem(
          await app.request("/data", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])
          }),
          400,
          "invalid-json"
        )
      })

      test("a streamed body without Content-Length is cut off at MAX_BODY_BYTES with 413", async (app, stream) => {
        const chunk = new TextEncoder().encode(" ".repeat(64 * 1024))
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(new TextEncoder().encode(`{"stream":"${stream}","data":{}}`))
            for (let i = 0; i < 20; i++) controller.enqueue(chunk)
            controller.close()
          }
        })
        await expectProblem(
          await app.request("/data", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body,
            duplex: "half"
          } as RequestInit),
          413,
          "payload-too-large"
        )
        expect(await storedIn(app, stream)).toEqual([])
      })

      test("a date that does not exist is a validation problem", async (app, stream) => {
        for (const occurredAt of ["2026-02-30T00:00:00Z", "2026-04-31T12:00:00Z", "2025-02-29T00:00:00Z"]) {
          await expectProblem(await app.json("/data", { stream, occurredAt, data: {} }), 400, "validation")
        }
        await expectProblem(await app.request(`/data?stream=${stream}&from=2026-02-30T00:00:00Z`), 400, "validation")
        expect((await app.json("/data", { stream, occurredAt: "2024-02-29T00:00:00Z", data: {} })).status).toBe(201)
      })
    })
  }
)

describe("the OpenAPI document", () => {
  it("lists the problems the HTTP server answers before routing", async () => {
    const app = makeTestApp(memoryDb)
    const text = await (await app.request("/openapi.json")).text()
    for (const type of ["malformed-request", "request-timeout", "headers-too-large"]) {
      expect(text).toContain(`/problems/${type}`)
    }
    await app.dispose()
  })
})
