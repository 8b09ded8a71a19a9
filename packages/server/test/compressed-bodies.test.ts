/**
 * README, Input limits: every POST route takes a body compressed with gzip,
 * deflate, br or zstd; its limits count the decompressed bytes; a stream that
 * does not decompress is a 400, another coding a 415 naming the accepted ones.
 * On the app and on a real socket, where the hot POST route hands a compressed
 * body over to the app.
 */
import { describe, expect } from "@effect/vitest"
import {
  acquireApp,
  describeBackends,
  expectProblem,
  makeSocketApp,
  makeTestApp,
  memory,
  postgres,
  type TestApp
} from "@strata/testing"
import { brotliCompressSync, deflateSync, gzipSync, zstdCompressSync } from "node:zlib"

const compress = {
  gzip: gzipSync,
  deflate: deflateSync,
  br: brotliCompressSync,
  zstd: zstdCompressSync
} as const

const post = (app: TestApp, path: string, body: Uint8Array, headers: Record<string, string>) =>
  app.request(path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body })

const suite = (app: () => TestApp, test: (title: string, f: () => Promise<void>, timeout?: number) => void) => {
  const stream = `cz-${Math.random().toString(36).slice(2)}`

  describe("POST /data and POST /data/batch", () => {
    test("store a body compressed with each of gzip, deflate, br and zstd", async () => {
      for (const [coding, f] of Object.entries(compress)) {
        const one = await post(
          app(),
          "/data",
          f(Buffer.from(JSON.stringify({ stream, key: coding, data: { n: 12345678901234567890n.toString() } }))),
          { "content-encoding": coding }
        )
        expect(one.status, coding).toBe(201)
        expect(((await one.json()) as { key: string }).key).toBe(coding)
        const batch = await post(
          app(),
          "/data/batch",
          f(Buffer.from(JSON.stringify({ records: [{ stream, key: `${coding}-1`, data: {} }] }))),
          { "content-encoding": coding.toUpperCase() }
        )
        expect(batch.status, coding).toBe(201)
      }
      const page = (await (await app().request(`/data?stream=${stream}&limit=100`)).json()) as {
        records: Array<unknown>
      }
      expect(page.records).toHaveLength(8)
    })

    test("take identity as no coding", async () => {
      const res = await post(app(), "/data", Buffer.from(JSON.stringify({ stream, data: {} })), {
        "content-encoding": "identity"
      })
      expect(res.status).toBe(201)
    })

    test("refuse another coding with a 415 whose Accept-Encoding names the accepted ones", async () => {
      for (const coding of ["compress", "gzip, br", "x-unknown"]) {
        const res = await post(app(), "/data", gzipSync(Buffer.from("{}")), { "content-encoding": coding })
        expect(res.headers.get("accept-encoding")).toBe("gzip, deflate, br, zstd")
        await expectProblem(res, 415, "unsupported-media-type")
      }
    })

    test("answer a stream that does not decompress with a 400, not a 500 or a UTF-8 complaint", async () => {
      for (const coding of Object.keys(compress)) {
        const body = await expectProblem(
          await post(app(), "/data", Buffer.from("this is not compressed at all"), { "content-encoding": coding }),
          400,
          "malformed-request"
        )
        expect(body.detail).toContain(coding)
      }
      const cut = gzipSync(Buffer.from(JSON.stringify({ stream, data: { x: "y".repeat(1000) } })))
      await expectProblem(
        await post(app(), "/data", cut.subarray(0, cut.length - 10), { "content-encoding": "gzip" }),
        400,
        "malformed-request"
      )
    })

    test("count MAX_BODY_BYTES on the decompressed body: a bomb is a 413, quickly", async () => {
      // 64 MiB of spaces inside a record: about 64 KiB gzipped, far under the limit as sent.
      const bomb = Buffer.concat([
        Buffer.from(`{"stream":"${stream}","data":{"pad":"`),
        Buffer.alloc(64 * 1024 * 1024, 0x20),
        Buffer.from("\"}}")
      ])
      for (const [coding, f] of Object.entries(compress)) {
        const sent = f(bomb)
        expect(sent.length).toBeLessThan(1024 * 1024)
        const started = Date.now()
        const body = await expectProblem(
          await post(app(), "/data", sent, { "content-encoding": coding }),
          413,
          "payload-too-large"
        )
        expect(Date.now() - started, coding).toBeLessThan(1000)
        expect(body.detail).toContain("decompressed")
      }
    }, 60_000)
  })

  describe("the other POST routes", () => {
    test("POST /streams/{stream}/schema/check takes a gzipped body", async () => {
      const res = await post(
        app(),
        `/streams/${stream}/schema/check`,
        gzipSync(Buffer.from(JSON.stringify({ schema: { type: "object" } }))),
        { "content-encoding": "gzip" }
      )
      expect(res.status).toBe(200)
    })
  })
}

describeBackends(
  "compressed request bodies",
  [memory, postgres],
  (db) => acquireApp(() => makeTestApp(db.layer)),
  ({ subject, test }) => suite(() => subject()!, (title, f, timeout) => test(title, () => f(), timeout))
)

describeBackends(
  "compressed request bodies on a socket (the hot POST hands them over)",
  [memory],
  (db) => acquireApp(() => makeSocketApp(db.layer)),
  ({ subject, test }) => suite(() => subject()!, (title, f, timeout) => test(title, () => f(), timeout))
)
