/**
 * WORKERS: several server processes on one port (a real process tree on the
 * real PostgreSQL). They all answer, a record written through one is read
 * through any, SIGTERM drains them all and the primary exits 0; without
 * DATABASE_URL (the embedded PGlite serves one process) it refuses to start.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { dataHeaders, freshDatabase, postgresAvailable, startServer } from "@strata/testing"
import { execFile } from "node:child_process"
import { join } from "node:path"

const available = await postgresAvailable()
const suite = available ? describe : describe.skip

suite("WORKERS=2", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  beforeAll(async () => {
    db = await freshDatabase()
  }, 60_000)
  afterAll(() => db?.drop())

  it("serves from two processes, reads back through any, and exits 0 on SIGTERM", async () => {
    const server = await startServer({ DATABASE_URL: db.url, WORKERS: "2", SHUTDOWN_DELAY: "0s", LOG_LEVEL: "Info" })
    try {
      // Ready means one worker answers; the other may still be starting on a busy machine.
      const listening = () => server.stdout().match(/Listening on/g)?.length ?? 0
      for (let i = 0; i < 300 && listening() < 2; i++) await new Promise((r) => setTimeout(r, 100))
      expect(listening()).toBe(2)
      const ids: Array<string> = []
      for (let i = 0; i < 20; i++) {
        // A connection each, so the kernel may give them to either worker.
        const res = await fetch(`${server.base}/data`, {
          method: "POST",
          headers: { ...dataHeaders(server), connection: "close" },
          body: JSON.stringify({ stream: "workers", data: { i } })
        })
        expect(res.status).toBe(201)
        ids.push(((await res.json()) as { id: string }).id)
      }
      for (const id of ids) {
        const res = await fetch(`${server.base}/data/${id}`, {
          headers: { ...dataHeaders(server), connection: "close" }
        })
        expect(res.status).toBe(200)
      }
      expect(server.stdout()).toContain("Supervising workers")
      server.child.kill("SIGTERM")
      const [code] = await server.exited
      expect(code).toBe(0)
    } finally {
      server.child.kill("SIGKILL")
    }
  }, 60_000)
})

describe("WORKERS without DATABASE_URL", () => {
  it("refuses to start, naming the variable", async () => {
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) =>
      execFile(process.execPath, [join(import.meta.dirname, "../src/main.ts")], {
        env: { ...process.env, WORKERS: "2", DATABASE_URL: "" }
      }, (error, _stdout, stderr) => resolve({ code: error === null ? 0 : (error.code as number), stderr }))
    )
    expect(result.code).toBe(78)
    expect(result.stderr).toContain("WORKERS")
    expect(result.stderr).toContain("DATABASE_URL")
  }, 30_000)
})
