/**
 * Graceful shutdown (SPEC §6) on a real process: on SIGTERM readiness turns 503
 * at once, a request in flight still completes, new connections are refused
 * after SHUTDOWN_DELAY, and the process exits 0.
 */
import { describe, expect, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { once } from "node:events"
import { mkdtempSync, rmSync } from "node:fs"
import { request } from "node:http"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port
      server.close(() => resolve(port))
    })
  })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe("on SIGTERM", () => {
  it("turns readiness 503, finishes the request in flight, refuses new connections, and exits 0", async () => {
    const dir = mkdtempSync(join(tmpdir(), "strata-shutdown-"))
    const port = await freePort()
    const child = spawn(process.execPath, [join(import.meta.dirname, "../src/main.ts")], {
      env: {
        ...process.env,
        PORT: String(port),
        HOST: "127.0.0.1",
        DATA_DIR: dir,
        SHUTDOWN_DELAY: "1s",
        LOG_LEVEL: "Warn"
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    const exited = once(child, "exit")
    let output = ""
    child.stdout!.on("data", (d) => output += d)
    child.stderr!.on("data", (d) => output += d)
    try {
      const base = `http://127.0.0.1:${port}`
      let up = false
      for (let i = 0; i < 100 && !up; i++) {
        up = await fetch(`${base}/health/ready`, { signal: AbortSignal.timeout(2000) }).then(
          (r) => r.status === 200,
          () => false
        )
        if (!up) await sleep(250)
      }
      if (!up) console.log("server output:", output)
      expect(up).toBe(true)

      // A POST whose body is still arriving when SIGTERM comes.
      const body = JSON.stringify({ stream: "shutdown", data: { pad: "x".repeat(1000) } })
      const inFlight = new Promise<number>((resolve, reject) => {
        const req = request(`${base}/data`, {
          method: "POST",
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) }
        }, (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        })
        req.on("error", reject)
        req.write(body.slice(0, 100))
        setTimeout(() => req.end(body.slice(100)), 600)
      })
      await sleep(100)
      child.kill("SIGTERM")
      await sleep(200)

      expect((await fetch(`${base}/health/ready`)).status).toBe(503)
      expect(await inFlight).toBe(201)

      await sleep(1500) // past SHUTDOWN_DELAY
      const refused = await fetch(`${base}/health/live`).then(() => false, () => true)
      expect(refused).toBe(true)
      const [code] = await exited
      expect(code).toBe(0)
    } finally {
      child.kill("SIGKILL")
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})
