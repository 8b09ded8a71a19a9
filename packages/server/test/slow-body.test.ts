/**
 * README, Resilience: a `/data` request still running after REQUEST_TIMEOUT
 * gets a 503 problem with `Retry-After`. That holds for a client that sends
 * its body one byte every two seconds too: it gets that answer, not a
 * connection cut without one. On the real process, over a raw socket.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { expectProblem, type RawResponse, type ServerProcess, startServer } from "@strata/testing"
import { mkdtempSync, rmSync } from "node:fs"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

/** Sends the head, then the body a byte every two seconds; answers the response, or status 0 if none came. */
const slowly = (server: ServerProcess, head: string, body: string, giveUpMs: number) =>
  new Promise<RawResponse & { readonly closedWithout: boolean }>((resolve) => {
    const socket = connect(server.port, "127.0.0.1")
    const chunks: Array<Buffer> = []
    let sent = 0
    const timer = setInterval(() => {
      if (sent < body.length && socket.writable) socket.write(body[sent++])
    }, 2000)
    const finish = () => {
      clearInterval(timer)
      clearTimeout(giveUp)
      socket.destroy()
      const text = Buffer.concat(chunks).toString("utf8")
      const [headText = "", ...rest] = text.split("\r\n\r\n")
      const [statusLine = "", ...lines] = headText.split("\r\n")
      const headers: Record<string, string> = {}
      for (const line of lines) {
        const i = line.indexOf(":")
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
      }
      resolve({
        status: Number(statusLine.split(" ")[1] ?? 0) || 0,
        headers,
        body: rest.join("\r\n\r\n"),
        closedWithout: text === ""
      })
    }
    const giveUp = setTimeout(finish, giveUpMs)
    socket.on("data", (d) => {
      chunks.push(d)
      const text = Buffer.concat(chunks).toString("utf8")
      const end = text.indexOf("\r\n\r\n")
      const length = /content-length:\s*(\d+)/i.exec(text)?.[1]
      if (end !== -1 && length !== undefined && Buffer.byteLength(text) >= end + 4 + Number(length)) finish()
    })
    socket.on("error", () => {})
    socket.on("close", finish)
    socket.write(head)
  })

describe("a slow body", () => {
  const dir = mkdtempSync(join(tmpdir(), "strata-slow-"))
  let server: ServerProcess
  beforeAll(async () => {
    server = await startServer({ DATA_DIR: dir, REQUEST_TIMEOUT: "3s" })
  }, 60_000)
  afterAll(async () => {
    server?.child.kill("SIGKILL")
    await server?.exited
    rmSync(dir, { recursive: true, force: true })
  })

  const headOf = (path: string, contentType: string, length: number, extra = "") =>
    `POST ${path} HTTP/1.1\r\nHost: strata.test\r\nAuthorization: Bearer ${server.apiKey}\r\nContent-Type: ${contentType}\r\nContent-Length: ${length}\r\n${extra}\r\n`

  const cases = [
    ["POST /data (the hot route)", "/data", "application/json", ""],
    ["POST /data with an Idempotency-Key (the app)", "/data", "application/json", "Idempotency-Key: slow-1\r\n"],
    ["POST /data/batch", "/data/batch", "application/json", ""],
    ["POST /data/bulk", "/data/bulk", "application/x-ndjson", ""]
  ] as const

  for (const [title, path, contentType, extra] of cases) {
    it(`${title} gets the 503 with Retry-After once REQUEST_TIMEOUT passes`, async () => {
      // A key the process has seen is one the hot routes serve.
      const warm = await fetch(`${server.base}/data`, {
        method: "POST",
        headers: { authorization: `Bearer ${server.apiKey}`, "content-type": "application/json" },
        body: "{\"stream\":\"slow\",\"data\":{}}"
      })
      expect(warm.status).toBe(201)
      const body = path === "/data/batch"
        ? "{\"records\":[{\"stream\":\"slow\",\"data\":{}}]}"
        : "{\"stream\":\"slow\",\"data\":{}}"
      const started = Date.now()
      const res = await slowly(server, headOf(path, contentType, body.length, extra), body, 12_000)
      expect(res.closedWithout).toBe(false)
      await expectProblem(res, 503, "unavailable")
      expect(res.headers["retry-after"]).toBeDefined()
      expect(Date.now() - started).toBeLessThan(7_000)
    }, 30_000)
  }
})
