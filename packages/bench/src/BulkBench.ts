/**
 * `pnpm bench bulk` (docs/PERFORMANCE.md, Bulk ingest): NDJSON in and out on
 * one server process and a throwaway PostgreSQL database, with the two
 * yardsticks of issue 28 measured in the same run:
 *
 * 1. `pgbench` inserting the same rows (record, outbox event, change) in
 *    1,000-row transactions, 2 clients, `--duration` seconds: rows/s.
 * 2. Single `POST /data` requests (autocannon, 50 connections): records/s.
 * 3. `POST /data/bulk` with `--rows` records of about 300 bytes, atomic,
 *    partial and gzipped: records/s, and the server's peak resident memory.
 * 4. The export of those records (`Accept: application/x-ndjson`), as curl asks
 *    (no compression) and as fetch does (gzip): records/s, and how far the
 *    server's RSS rose while it streamed; with `--export-rows`, one more export
 *    of that many records written straight into the database.
 * 5. A gzip bomb (1 GiB inflated) to `POST /data`: its status, how soon, and
 *    how far the server's RSS rose.
 */
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createGzip, gzipSync } from "node:zlib"
import { attempt, type BenchError } from "./BenchError.ts"
import { measure } from "./Measure.ts"
import { psql, throwawayDatabase } from "./Postgres.ts"
import { TENANT } from "./Seed.ts"
import { benchKey, serverEnv, serverProcess, strataCli } from "./Server.ts"

const log = (message: string) => console.error(`bench:bulk: ${message}`)

export interface BulkBenchOptions {
  readonly rows: number
  readonly duration: number
  /** Records written straight into the database for one more, large export (0: none). */
  readonly exportRows: number
}

const LARGE_STREAM = "export-large"

/**
 * Records `from`..`to` of the large export, made in PostgreSQL (the bulk route
 * would take minutes for ten million): the bulk bodies' shape, within the last
 * minute, so they fall in the partition the server made for now. Times are
 * whole milliseconds, as every record Strata writes has them (pages start after
 * a millisecond keyset).
 */
const largeExportRows = (from: number, to: number) =>
  `INSERT INTO records (tenant_id, id, stream, key, occurred_at, ingested_at, data, schema_version)
  SELECT '${TENANT}', gen_random_uuid(), '${LARGE_STREAM}', 'k' || (g % 1000),
    date_trunc('milliseconds', now()) - make_interval(secs => (g % 60000) / 1000.0), now(),
    ('{"amount":' || (1250 + g) || ',"currency":"EUR","note":"${"x".repeat(200)}"}')::jsonb, NULL
  FROM generate_series(${from}, ${to}) g`

const memory = (pid: number) => {
  const status = readFileSync(`/proc/${pid}/status`, "utf8")
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024
  return { rss: kb("VmRSS"), peak: kb("VmHWM") }
}

/** The server's RSS now, and a watch of its highest from now on: `stop` answers how far it rose, in MiB. */
const watchRss = (pid: number, everyMs: number) => {
  const before = memory(pid).rss
  let highest = before
  const sample = () => highest = Math.max(highest, memory(pid).rss)
  const timer = setInterval(sample, everyMs)
  return {
    before,
    stop: () => {
      clearInterval(timer)
      sample()
      return highest - before
    }
  }
}

/** One record's data: about 300 bytes a line with its envelope. */
const data = (i: number) => ({ amount: 1250 + i, currency: "EUR", note: "x".repeat(200) })
const line = (stream: string, i: number) => JSON.stringify({ stream, key: `k${i % 1000}`, data: data(i) })

/** The statement Strata's group commit runs, for 1,000 rows made in PostgreSQL. */
const PGBENCH_SCRIPT = `WITH input AS (
  SELECT 'pgbench'::text AS t, gen_random_uuid() AS i, 'pgbench'::text AS s, 'k' || (g % 1000) AS k, now() AS o,
    ('{"amount":' || (1250 + g) || ',"currency":"EUR","note":"${"x".repeat(200)}"}')::jsonb AS d, g AS n
  FROM generate_series(1, 1000) g
), stored AS (
  INSERT INTO records (tenant_id, id, stream, key, occurred_at, ingested_at, data, schema_version)
  SELECT t, i, s, k, o, now(), d, NULL FROM input
), events AS (
  INSERT INTO outbox (tenant_id, record_id, occurred_at, message_key, traceparent, stream, schema_version)
  SELECT t, i, o, t || '/' || s || '/' || k, NULL, s, NULL FROM input ORDER BY n
), changes AS (
  INSERT INTO changes (tenant_id, xid, n, record_id, stream)
  SELECT t, pg_current_xact_id(), n, i, s FROM input
)
SELECT 1;
`

const pgbench = (databaseUrl: string, duration: number) =>
  new Promise<number>((resolve, reject) => {
    const script = join(tmpdir(), `strata-bulk-${process.pid}.sql`)
    writeFileSync(script, PGBENCH_SCRIPT)
    const child = spawn("pgbench", ["-n", "-c", "2", "-j", "2", "-T", String(duration), "-f", script, databaseUrl])
    let out = ""
    child.stdout.on("data", (d) => out += d)
    child.stderr.on("data", (d) => out += d)
    child.on("error", reject)
    child.on("exit", (code) => {
      rmSync(script, { force: true })
      const tps = Number(/tps = ([0-9.]+)/.exec(out)?.[1])
      if (code !== 0 || !Number.isFinite(tps)) reject(new Error(`pgbench: ${out.trim()}`))
      else resolve(tps * 1000)
    })
  })

export const runBulkBench = (options: BulkBenchOptions): Effect.Effect<void, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const databaseUrl = yield* throwawayDatabase(log)
    yield* strataCli(["migrate"], { DATABASE_URL: databaseUrl, LOG_LEVEL: "Warn" })
    const auth = yield* benchKey(databaseUrl)
    const { base, pid } = yield* serverProcess({
      env: serverEnv(databaseUrl, { REQUEST_TIMEOUT: "120s", MAX_BULK_BYTES: "1GiB", MAX_BULK_RECORDS: "10000000" }),
      log
    })
    yield* attempt(async () => {
      const rate = (n: number, ms: number) => Math.round(n / (ms / 1000)).toLocaleString("en-US")

      log(`pgbench, 1,000-row transactions, ${options.duration} s`)
      const pgRows = await pgbench(databaseUrl, options.duration)
      console.log(`pgbench, record + event + change in 1,000-row transactions, 2 clients: ${rate(pgRows, 1000)} rows/s`)

      log(`single POST /data, ${options.duration} s`)
      const single = await measure(
        base,
        auth,
        {
          name: "POST /data",
          request: {
            method: "POST",
            path: "/data",
            headers: { "content-type": "application/json" },
            body: line("single", 1)
          },
          recordsPerRequest: 1
        },
        50,
        options.duration,
        new AbortController().signal
      )
      console.log(`single POST /data, 50 connections: ${rate(single.recordsPerSecond ?? 0, 1000)} records/s`)

      const bodyOf = (stream: string) =>
        Buffer.from(Array.from({ length: options.rows }, (_, i) => line(stream, i)).join("\n") + "\n")
      const post = async (label: string, path: string, body: Buffer, headers: Record<string, string> = {}) => {
        const before = memory(pid()!)
        const started = performance.now()
        const res = await fetch(`${base}${path}`, {
          method: "POST",
          headers: { ...auth, "content-type": "application/x-ndjson", ...headers },
          body
        })
        const text = await res.text()
        const ms = performance.now() - started
        if (res.status !== 200) throw new Error(`${label}: ${res.status} ${text}`)
        const after = memory(pid()!)
        console.log(
          `POST /data/bulk ${label}, ${options.rows.toLocaleString("en-US")} records, ${
            (body.length / 1e6).toFixed(1)
          } MB sent: ${(ms / 1000).toFixed(2)} s, ${rate(options.rows, ms)} records/s; server RSS ${
            before.rss.toFixed(0)
          } MiB before, peak ${after.peak.toFixed(0)} MiB`
        )
      }
      await post("atomic", "/data/bulk", bodyOf("atomic"))
      await post("partial", "/data/bulk?mode=partial", bodyOf("partial"))
      const gz = gzipSync(bodyOf("gzip"))
      await post("atomic, gzip", "/data/bulk", gz, { "content-encoding": "gzip" })

      // The export as `curl` asks for it (no compression), and as fetch does (gzip),
      // with the server's RSS sampled while it streams.
      const exportOf = async (label: string, stream: string, encoding: string, expected: number) => {
        const rss = watchRss(pid()!, 100)
        const started = performance.now()
        const res = await fetch(`${base}/data?stream=${stream}`, {
          headers: { ...auth, accept: "application/x-ndjson", "accept-encoding": encoding }
        })
        let lines = 0
        // Counted with indexOf: a loop over each byte made this client a rival of the server and PostgreSQL for the CPU.
        for await (const chunk of res.body! as AsyncIterable<Uint8Array>) {
          for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines++
        }
        const ms = performance.now() - started
        const grew = rss.stop()
        if (lines !== expected) throw new Error(`export ${label}: ${lines} records, ${expected} written`)
        console.log(
          `GET /data as NDJSON, ${label}, ${lines.toLocaleString("en-US")} records: ${(ms / 1000).toFixed(2)} s, ${
            rate(lines, ms)
          } records/s; server RSS ${rss.before.toFixed(0)} MiB before, at most +${grew.toFixed(0)} MiB`
        )
      }
      await exportOf("identity", "atomic", "identity", options.rows)
      await exportOf("gzip", "atomic", "gzip", options.rows)

      // A gzip body of about 1 MB that inflates to 1 GiB, to POST /data (MAX_BODY_BYTES
      // counts what it inflates to): refused after the limit, not after the gigabyte.
      const deflater = createGzip()
      const compressed: Array<Buffer> = []
      deflater.on("data", (chunk: Buffer) => compressed.push(chunk))
      const inflated = new Promise((resolve) => deflater.on("end", resolve))
      deflater.write(`{"stream":"bomb","data":{"pad":"`)
      const spaces = Buffer.alloc(1024 * 1024, 0x20)
      for (let i = 0; i < 1024; i++) {
        if (!deflater.write(spaces)) await new Promise((resolve) => deflater.once("drain", resolve))
      }
      deflater.end(`"}}`)
      await inflated
      const bomb = Buffer.concat(compressed)
      const rss = watchRss(pid()!, 20)
      const bombStarted = performance.now()
      const refused = await fetch(`${base}/data`, {
        method: "POST",
        headers: { ...auth, "content-type": "application/json", "content-encoding": "gzip" },
        body: bomb
      })
      await refused.text()
      const bombMs = performance.now() - bombStarted
      const grew = rss.stop()
      console.log(
        `POST /data, gzip bomb of ${(bomb.length / 1e6).toFixed(1)} MB inflating to 1 GiB: ${refused.status} in ${
          bombMs.toFixed(0)
        } ms; server RSS ${rss.before.toFixed(0)} MiB before, at most +${grew.toFixed(0)} MiB`
      )

      if (options.exportRows > 0) {
        log(`loading ${options.exportRows.toLocaleString("en-US")} records for the large export`)
        for (let from = 1; from <= options.exportRows; from += 1_000_000) {
          await psql(databaseUrl, largeExportRows(from, Math.min(from + 999_999, options.exportRows)))
        }
        await psql(databaseUrl, "VACUUM ANALYZE records")
        await exportOf("identity", LARGE_STREAM, "identity", options.exportRows)
      }
    })
  }))
