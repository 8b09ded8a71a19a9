/**
 * Graceful shutdown (README: Resilience) on a real process: on SIGTERM readiness turns 503
 * at once, new connections are still taken for SHUTDOWN_DELAY and refused
 * after it, every request in flight completes with its normal status, and the
 * process exits 0 — at the latest after SHUTDOWN_TIMEOUT.
 */
import { describe, expect, it } from "@effect/vitest"
import { dataHeaders, type ServerProcess, sleep, startServer } from "@strata/testing"
import { mkdtempSync, rmSync } from "node:fs"
import { request } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"

/**
 * A POST on its own connection whose body arrives in two parts: the first at
 * once, the rest when `finish` is called. Answers the status, or the error
 * code when the connection failed.
 */
const slowPost = (server: ServerProcess, path: string, body: unknown) => {
  const text = JSON.stringify(body)
  let finish = () => {}
  const result = new Promise<number | string>((resolve) => {
    const req = request(`${server.base}${path}`, {
      method: "POST",
      agent: false,
      headers: { ...dataHeaders(server), "content-length": String(Buffer.byteLength(text)) }
    }, (res) => {
      res.resume()
      res.on("end", () => resolve(res.statusCode ?? 0))
    })
    req.on("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
    req.write(text.slice(0, 10))
    finish = () => req.end(text.slice(10))
  })
  return { result, finish: () => finish() }
}

/** A GET on a new connection: its status, or the error code when the connection failed. */
const get = (server: ServerProcess, path: string) =>
  new Promise<number | string>((resolve) => {
    const req = request(`${server.base}${path}`, { agent: false }, (res) => {
      res.resume()
      res.on("end", () => resolve(res.statusCode ?? 0))
    })
    req.on("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
    req.end()
  })

const withServer = async (env: Record<string, string>, f: (server: ServerProcess) => Promise<void>) => {
  const dir = mkdtempSync(join(tmpdir(), "strata-shutdown-"))
  let server: ServerProcess | undefined
  try {
    server = await startServer({ DATA_DIR: dir, ...env })
    await f(server)
  } catch (error) {
    if (server !== undefined) console.log("server output:", server.output())
    throw error
  } finally {
    server?.child.kill("SIGKILL")
    await server?.exited
    rmSync(dir, { recursive: true, force: true })
  }
}

describe("on SIGTERM", () => {
  it(
    "under a stream of slow requests, finishes every one, refuses new connections after SHUTDOWN_DELAY, and exits 0",
    async () => {
      await withServer({ SHUTDOWN_DELAY: "2s", SHUTDOWN_TIMEOUT: "20s" }, async (server) => {
        // Held open until new connections are refused: proof that the process
        // still runs then, and that a request in flight outlives the listener.
        const held = slowPost(server, "/data", { stream: "shutdown", data: { held: true } })

        // A new slow request every 50 ms, each finishing its body 400 ms later,
        // from before SIGTERM until 500 ms before the listener closes.
        const stream: Array<Promise<number | string>> = []
        let sigterm = 0
        const started = Date.now()
        for (let i = 0; sigterm === 0 || Date.now() - sigterm < 1500; i++) {
          const post = i % 2 === 0
            ? slowPost(server, "/data", { stream: "shutdown", data: { i } })
            : slowPost(server, "/data/batch", { records: [{ stream: "shutdown", data: { i } }] })
          setTimeout(post.finish, 400)
          stream.push(post.result)
          if (sigterm === 0 && Date.now() - started >= 500) {
            server.child.kill("SIGTERM")
            sigterm = Date.now()
            await sleep(100)
            expect(await get(server, "/health/ready")).toBe(503)
          }
          await sleep(50)
        }
        expect(await Promise.all(stream)).toEqual(stream.map(() => 201))

        // Once SHUTDOWN_DELAY is over, a new connection is refused.
        let probe: number | string = 0
        for (let i = 0; i < 100 && probe !== "ECONNREFUSED"; i++) {
          probe = await get(server, "/health/live")
          if (probe !== "ECONNREFUSED") await sleep(100)
        }
        expect(probe).toBe("ECONNREFUSED")
        expect(server.child.exitCode).toBeNull() // still draining the held request

        held.finish()
        expect(await held.result).toBe(201)
        expect(await server.exited).toEqual([0, null])
      })
    },
    60_000
  )

  it("exits 0 after SHUTDOWN_TIMEOUT even when a request never finishes", async () => {
    // REQUEST_TIMEOUT is far away: only SHUTDOWN_TIMEOUT can end the stuck request.
    await withServer({ SHUTDOWN_DELAY: "0s", SHUTDOWN_TIMEOUT: "1s", REQUEST_TIMEOUT: "10m" }, async (server) => {
      const stuck = slowPost(server, "/data", { stream: "shutdown", data: { stuck: true } })
      await sleep(200) // let the request reach the server
      server.child.kill("SIGTERM")
      expect(await server.exited).toEqual([0, null])
      // The client whose body never arrived is cut off rather than answered.
      expect(typeof await stuck.result).toBe("string")
    })
  }, 60_000)
})
