/**
 * `bench chaos`, short: two faults under open-loop load on a rig of its own
 * (a PostgreSQL cluster it makes with initdb, so the machine's own is never
 * stopped; a redis-server of its own; two Strata processes), publishing to the
 * test run's broker on a topic of its own. PostgreSQL is stopped with `-m
 * immediate` and started; one Strata process is killed with SIGKILL and started.
 * The run checks, and this test asserts, that nothing acknowledged was lost,
 * no 500 came, cached reads kept answering and both faults were over in time.
 */
import { describe, expect, it } from "@effect/vitest"
import { kafka, kafkaAvailable, unavailable } from "@strata/testing"
import { execFile, execFileSync } from "node:child_process"
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"

const MAIN = fileURLToPath(new URL("../src/main.ts", import.meta.url))
const INITDB = "/usr/lib/postgresql/15/bin/initdb"

const onPath = (program: string) => {
  try {
    execFileSync("sh", ["-c", `command -v ${program}`], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}

const available = () =>
  (existsSync(INITDB) || unavailable(`PostgreSQL's binaries (${INITDB})`, "the chaos run")) &&
  (onPath("redis-server") || unavailable("redis-server", "the chaos run")) &&
  kafkaAvailable()

const run = (args: ReadonlyArray<string>) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [MAIN, "bench", "chaos", ...args],
      { timeout: 300_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) =>
        resolve({ code: error === null ? 0 : (typeof error.code === "number" ? error.code : null), stdout, stderr })
    )
  })

describe("bench chaos", () => {
  it(
    "keeps every acknowledged write through a database crash and a killed process",
    { timeout: 360_000 },
    async (ctx) => {
      if (!available()) return ctx.skip()
      const { code, stderr, stdout } = await run([
        "--faults",
        "pg-stop,strata-kill",
        "--rate",
        "100",
        "--settle",
        "3",
        "--hold",
        "5",
        "--recover",
        "30",
        "--hot-ids",
        "200",
        "--kafka-brokers",
        kafka.brokers
      ])
      expect(code, `${stdout}\n${stderr}`).toBe(0)
      const row = (fault: string) => {
        const line = stdout.split("\n").find((l) => l.startsWith(`${fault} `))
        expect(line, stdout).toBeDefined()
        const [requests, ok, unavailable, other, lost] = line!.slice(fault.length).trim().split(/\s+/).map((n) =>
          Number(n.replaceAll(",", ""))
        )
        return { requests, ok, unavailable, other, lost }
      }
      const pg = row("pg-stop")
      // The database was down: some requests got 503s, and none was lost.
      expect(pg.unavailable).toBeGreaterThan(0)
      expect(pg.lost).toBe(0)
      expect(row("strata-kill").lost).toBe(0)
      expect(stdout).toMatch(
        /PASS end: every acknowledged write readable, listed and with its event \(([\d,]+) acknowledged/
      )
      expect(stdout).not.toContain("FAIL")
    }
  )
})
