/**
 * `bench load` end to end: a short constant rate against a server of its own on
 * the local PostgreSQL (Redis when it answers). A missing PostgreSQL skips it
 * locally and fails it under CI=true, as every PostgreSQL suite.
 */
import { describe, expect, it } from "@effect/vitest"
import { postgresAvailable } from "@strata/testing"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"

const MAIN = fileURLToPath(new URL("../src/main.ts", import.meta.url))

const run = (args: ReadonlyArray<string>) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [MAIN, "bench", "load", ...args],
      { timeout: 90_000 },
      (error, stdout, stderr) =>
        resolve({ code: error === null ? 0 : (typeof error.code === "number" ? error.code : null), stdout, stderr })
    )
  })

describe("bench load", () => {
  it("sends the schedule to its own server and prints one JSON line per step", { timeout: 120_000 }, async (ctx) => {
    if (!(await postgresAvailable())) return ctx.skip()
    const { code, stderr, stdout } = await run([
      "--rate",
      "100",
      "--duration",
      "3",
      "--hot-ids",
      "200",
      "--cold-ids",
      "100",
      "--json"
    ])
    expect(code, stderr).toBe(0)
    const lines = stdout.trim().split("\n")
    expect(lines).toHaveLength(1)
    const step = JSON.parse(lines[0]) as {
      rate: number
      due: number
      sent: number
      answered: number
      ok: number
      errors: Record<string, number>
      kinds: Record<string, { sent: number }>
    }
    expect(step.rate).toBe(100)
    expect(step.due).toBe(300)
    // Every request sent got an answer, and writes and reads of every kind were among them.
    expect(step.answered).toBe(step.sent)
    expect(step.ok).toBeGreaterThan(0)
    expect(Object.keys(step.kinds).toSorted()).toEqual(["batch", "get-cold", "get-hot", "post", "range"])
    expect(stderr).toContain("step 1: 100/s for 3 s")
  })
})
