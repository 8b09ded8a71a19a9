/**
 * What the HTTP server itself refuses, before a request reaches the app: a
 * request line (path and query string) plus headers over MAX_HEADER_BYTES,
 * and bytes that are not HTTP. Each gets a problem document, and the server
 * keeps serving. Raw sockets on the real process, since only they can send
 * what a well-behaved client library would not.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { dataHeaders, expectProblem, type RawResponse, type ServerProcess, startServer } from "@strata/testing"
import { mkdtempSync, rmSync } from "node:fs"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

/** Sends `bytes` on a new connection and reads the answer until the server closes it. */
const raw = (server: ServerProcess, bytes: string | Uint8Array) =>
  new Promise<RawResponse>((resolve, reject) => {
    const socket = connect(server.port, "127.0.0.1")
    const chunks: Array<Buffer> = []
    socket.on("data", (d) => chunks.push(d))
    socket.on("error", reject)
    socket.on("close", () => {
      const text = Buffer.concat(chunks).toString("utf8")
      const [head = "", ...rest] = text.split("\r\n\r\n")
      const [statusLine = "", ...lines] = head.split("\r\n")
      const headers: Record<string, string> = {}
      for (const line of lines) {
        const i = line.indexOf(":")
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
      }
      resolve({ status: Number(statusLine.split(" ")[1]), headers, body: rest.join("\r\n\r\n") })
    })
    socket.end(bytes)
  })

const get = (path: string, headers: Record<string, string> = {}) =>
  [
    `GET ${path} HTTP/1.1`,
    "Host: strata.test",
    "Connection: close",
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    "",
    ""
  ].join("\r\n")

/** These requests send no X-Request-Id: the server makes one up (a UUID) even for bytes that are not HTTP. */
const expectRawProblem = async (res: RawResponse, status: number, type: string) => {
  expect(res.headers["x-request-id"]).toMatch(/^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$/)
  return expectProblem(res, status, type)
}

describe("the HTTP server", () => {
  const dir = mkdtempSync(join(tmpdir(), "strata-limits-"))
  let server: ServerProcess
  beforeAll(async () => {
    server = await startServer({ DATA_DIR: dir, MAX_HEADER_BYTES: "8KiB" })
  }, 60_000)
  afterAll(async () => {
    server?.child.kill("SIGKILL")
    await server?.exited
    rmSync(dir, { recursive: true, force: true })
  })

  it("answers a query string that takes the request past MAX_HEADER_BYTES with a 431 problem", async () => {
    expect((await raw(server, get(`/health/live?pad=${"x".repeat(4000)}`))).status).toBe(200)
    const body = await expectRawProblem(
      await raw(server, get(`/data?stream=s&pad=${"x".repeat(10_000)}`, dataHeaders(server))),
      431,
      "headers-too-large"
    )
    expect(body.detail).toContain("MAX_HEADER_BYTES")
  })

  it("answers headers over MAX_HEADER_BYTES with a 431 problem", async () => {
    await expectRawProblem(
      await raw(server, get("/health/live", { "x-pad": "x".repeat(10_000) })),
      431,
      "headers-too-large"
    )
    const many = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`x-h${i}`, "0123456789"]))
    await expectRawProblem(await raw(server, get("/health/live", many)), 431, "headers-too-large")
  })

  it("answers bytes that are not HTTP with a malformed-request problem", async () => {
    for (
      const bytes of [
        "\u0000\u0001\u0002 garbage\r\n\r\n",
        "GET /health/live HTTP/9.9\r\n\r\n",
        "GET /health/live HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        // With a valid key, so the body is read (without one, the answer is a 401 before it).
        `POST /data HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${server.apiKey}\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n`,
        `POST /data HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${server.apiKey}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}`,
        new Uint8Array([0xff, 0xfe, 0x00, 0x0d, 0x0a, 0x0d, 0x0a])
      ]
    ) {
      await expectRawProblem(await raw(server, bytes), 400, "malformed-request")
    }
  })

  it("keeps serving afterwards", async () => {
    expect((await raw(server, get("/health/live"))).status).toBe(200)
    expect(server.child.exitCode).toBeNull()
  })
})
