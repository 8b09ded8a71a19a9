/**
 * README, Bulk ingest and Export, as a user runs them: an NDJSON file goes in
 * with one `curl --data-binary @file` (and gzipped, with `content-encoding:
 * gzip`) and comes back out with one `curl --compressed`, on the real process
 * over PostgreSQL. The file is BULK_CURL_MB megabytes (5 by default; the issue's
 * 50 was run by hand, see docs/PERFORMANCE.md).
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { freshDatabase, postgresAvailable, type ServerProcess, startServer } from "@strata/testing"
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { gzipSync } from "node:zlib"

const run = promisify(execFile)
const MB = Number(process.env.BULK_CURL_MB ?? 5)

describe("bulk in and out with curl", async () => {
  const available = await postgresAvailable()
  const dir = mkdtempSync(join(tmpdir(), "strata-curl-"))
  const file = join(dir, "orders.ndjson")
  let db: { url: string; drop: () => Promise<void> } | undefined
  let server: ServerProcess | undefined
  let lines = 0

  beforeAll(async () => {
    if (!available) return
    db = await freshDatabase()
    server = await startServer({ DATABASE_URL: db.url, REQUEST_TIMEOUT: "60s", MAX_BULK_BYTES: "256MiB" })
    const out: Array<string> = []
    let size = 0
    while (size < MB * 1e6) {
      const text = JSON.stringify({
        stream: "orders",
        key: `customer-${lines % 1000}`,
        occurredAt: new Date(Date.UTC(2026, 10, 1) + lines * 10).toISOString(),
        data: { amount: 1250 + lines, currency: "EUR", note: "x".repeat(180) }
      })
      out.push(text)
      size += text.length + 1
      lines++
    }
    writeFileSync(file, `${out.join("\n")}\n`)
    writeFileSync(`${file}.gz`, gzipSync(readFileSync(file)))
  }, 120_000)
  afterAll(async () => {
    server?.child.kill("SIGKILL")
    await server?.exited
    await db?.drop()
    rmSync(dir, { recursive: true, force: true })
  })

  const curl = async (args: ReadonlyArray<string>) =>
    (await run("curl", ["-sS", "--fail-with-body", "-H", `authorization: Bearer ${server!.apiKey}`, ...args], {
      maxBuffer: 1024 * 1024 * 1024
    })).stdout

  it.skipIf(!available)("takes the file with one curl --data-binary, and gzipped", async () => {
    const plain = JSON.parse(
      await curl([
        "-X",
        "POST",
        `${server!.base}/data/bulk`,
        "-H",
        "content-type: application/x-ndjson",
        "--data-binary",
        `@${file}`
      ])
    )
    expect(plain).toEqual({ received: lines, accepted: lines, rejected: 0, errors: [] })
    const gzipped = JSON.parse(
      await curl([
        "-X",
        "POST",
        `${server!.base}/data/bulk?mode=partial`,
        "-H",
        "content-type: application/x-ndjson",
        "-H",
        "content-encoding: gzip",
        "--data-binary",
        `@${file}.gz`
      ])
    )
    expect(gzipped).toEqual({ received: lines, accepted: lines, rejected: 0, errors: [] })
  }, 300_000)

  it.skipIf(!available)("gives every record back with one curl --compressed, oldest first", async () => {
    const out = join(dir, "export.ndjson")
    await curl([
      `${server!.base}/data?stream=orders&order=asc`,
      "-H",
      "accept: application/x-ndjson",
      "--compressed",
      "-o",
      out
    ])
    const exported = readFileSync(out, "utf8").split("\n").filter((l) => l !== "")
    // Both uploads: every line twice, the same data in the same order of occurrence.
    expect(exported).toHaveLength(2 * lines)
    const sent = readFileSync(file, "utf8").split("\n").filter((l) => l !== "")
    const first = JSON.parse(exported[0]) as { data: unknown; occurredAt: string }
    expect(first.data).toEqual(JSON.parse(sent[0]).data)
    const last = JSON.parse(exported.at(-1)!) as { data: unknown; occurredAt: string }
    expect(last.occurredAt).toBe(JSON.parse(sent.at(-1)!).occurredAt)
  }, 300_000)
})
