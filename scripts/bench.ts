/**
 * `pnpm bench [--rows N]`: measures the HTTP API under load on this machine.
 *
 * Creates a throwaway database on the local PostgreSQL (or uses BENCH_DATABASE_URL),
 * starts the server on it on a free port, optionally seeds N rows (see seed.ts),
 * writes 10,000 records through the API so reads have ids, runs each scenario
 * with autocannon and prints one table. Then stops the server and drops the
 * database it created.
 *
 * Environment: BENCH_DURATION (seconds per scenario, default 10), BENCH_CONNECTIONS
 * (default 50), BENCH_DATABASE_URL (an existing, possibly non-empty database: kept).
 * Other variables (e.g. DATABASE_POOL_MAX) reach the server unchanged.
 */
import autocannon from "autocannon"
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { once } from "node:events"
import { createServer } from "node:net"
import { availableParallelism, cpus, totalmem } from "node:os"
import { parseArgs } from "node:util"
import { describeSeed, KEYS_PER_STREAM, parseCount, psql, seed, STREAMS } from "./seed.ts"

const ADMIN_URL = "postgres://root@127.0.0.1:5432/postgres"
const HOST = "127.0.0.1"
const PRECREATE = 10_000
const BATCH = 100
const READY_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 15_000

interface Scenario {
  readonly name: string
  readonly request: autocannon.Request
  /** Records stored per successful request, to report records/s next to requests/s. */
  readonly recordsPerRequest?: number
}

interface Row {
  readonly name: string
  readonly rps: number
  /** Latency percentiles of 2xx responses, in ms: p50, p90, p99, p99.9. */
  readonly percentiles: ReadonlyArray<number>
  readonly non2xx: number
  readonly errors: number
  readonly recordsPerSecond?: number
}

const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(Math.random() * items.length)]

const envCount = (name: string, fallback: number): number => {
  const text = process.env[name]
  return text === undefined || text === "" ? fallback : parseCount(name, text)
}

const progress = (message: string) => console.error(`bench: ${message}`)

// ---------------------------------------------------------------------------
// Database and server lifecycle

const checkReachable = async (databaseUrl: string): Promise<void> => {
  try {
    await psql(databaseUrl, "SELECT 1")
  } catch (e) {
    const { hostname, port, username } = new URL(databaseUrl)
    throw new Error(
      `PostgreSQL is not reachable at ${hostname}:${port || 5432} as user ${username || "(default)"}: ` +
        `${(e as Error).message}\nStart it, or point BENCH_DATABASE_URL at a database to use.`,
      { cause: e }
    )
  }
}

const createDatabase = async (): Promise<string> => {
  await checkReachable(ADMIN_URL)
  const name = `strata_bench_${randomBytes(4).toString("hex")}`
  await psql(ADMIN_URL, `CREATE DATABASE ${name}`)
  const url = new URL(ADMIN_URL)
  url.pathname = `/${name}`
  return url.toString()
}

const dropDatabase = (databaseUrl: string) =>
  // FORCE: a server that died mid-run may have left connections behind.
  psql(ADMIN_URL, `DROP DATABASE IF EXISTS ${new URL(databaseUrl).pathname.slice(1)} WITH (FORCE)`)

const freePort = async (): Promise<number> => {
  const server = createServer().listen(0, HOST)
  await once(server, "listening")
  const address = server.address()
  server.close()
  if (address === null || typeof address === "string") throw new Error("could not pick a free port")
  return address.port
}

const startServer = (databaseUrl: string, port: number): ChildProcess =>
  spawn(process.execPath, ["packages/server/src/main.ts"], {
    cwd: new URL("..", import.meta.url),
    stdio: ["ignore", "inherit", "inherit"],
    env: {
      ...process.env,
      HOST,
      PORT: String(port),
      DATABASE_URL: databaseUrl,
      ACCESS_LOG: "false",
      LOG_LEVEL: "Warn"
    }
  })

const waitReady = async (base: string, server: ChildProcess): Promise<void> => {
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (server.exitCode !== null || server.signalCode !== null) {
      throw new Error(`the server exited (${server.exitCode ?? server.signalCode}) before it was ready`)
    }
    const status = await fetch(`${base}/health/ready`, { signal: AbortSignal.timeout(1_000) })
      .then((r) => r.status, () => 0)
    if (status === 200) return
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  throw new Error(`the server was not ready within ${READY_TIMEOUT_MS / 1000} s`)
}

const stopServer = async (server: ChildProcess): Promise<void> => {
  if (server.exitCode !== null || server.signalCode !== null) return
  const exited = once(server, "exit")
  server.kill("SIGTERM")
  const timer = setTimeout(() => server.kill("SIGKILL"), STOP_TIMEOUT_MS)
  await exited
  clearTimeout(timer)
}

// ---------------------------------------------------------------------------
// Load

const newRecord = (occurredAt?: Date) => ({
  stream: pick(STREAMS),
  key: `customer-${Math.floor(Math.random() * KEYS_PER_STREAM)}`,
  ...(occurredAt !== undefined ? { occurredAt: occurredAt.toISOString() } : {}),
  data: { amount: Math.round(Math.random() * 100_000) / 100, status: "new", items: [{ sku: "A-1", qty: 2 }] }
})

/** Writes PRECREATE records through the API, spread over the last year, and answers their ids. */
const precreate = async (base: string): Promise<Array<string>> => {
  const ids: Array<string> = []
  const now = Date.now()
  const postBatch = async () => {
    const records = Array.from({ length: BATCH }, () => newRecord(new Date(now - Math.random() * 365 * 86_400_000)))
    const res = await fetch(`${base}/data/batch`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ records }),
      signal: AbortSignal.timeout(30_000)
    })
    if (res.status !== 201) throw new Error(`POST /data/batch answered ${res.status}: ${await res.text()}`)
    const body = (await res.json()) as { records: Array<{ id: string }> }
    for (const r of body.records) ids.push(r.id)
  }
  // A few batches in flight: quick, without measuring anything yet.
  const lanes = 4
  await Promise.all(Array.from({ length: lanes }, async (_, lane) => {
    for (let i = lane; i < PRECREATE / BATCH; i += lanes) await postBatch()
  }))
  return ids
}

const scenarios = (ids: ReadonlyArray<string>): Array<Scenario> => {
  const json = { "content-type": "application/json" }
  // Bodies are made up front so the load generator spends its CPU on sending, not on JSON.stringify.
  const singles = Array.from({ length: 1_000 }, () => JSON.stringify(newRecord()))
  const batches = Array.from(
    { length: 20 },
    () => JSON.stringify({ records: Array.from({ length: BATCH }, () => newRecord()) })
  )
  const post = (request: autocannon.Request): autocannon.Request => ({
    ...request,
    method: "POST",
    path: "/data",
    headers: json,
    body: pick(singles)
  })
  const getById = (request: autocannon.Request): autocannon.Request => ({
    ...request,
    method: "GET",
    path: `/data/${pick(ids)}`,
    body: ""
  })
  const getPage = (request: autocannon.Request): autocannon.Request => ({
    ...request,
    method: "GET",
    path: `/data?stream=${pick(STREAMS)}&limit=100`,
    body: ""
  })
  return [
    { name: "POST /data", request: { setupRequest: post } },
    {
      name: `POST /data/batch (${BATCH})`,
      request: {
        setupRequest: (r) => ({ ...r, method: "POST", path: "/data/batch", headers: json, body: pick(batches) })
      },
      recordsPerRequest: BATCH
    },
    { name: "GET /data/{id}", request: { setupRequest: getById } },
    { name: "GET /data?stream&limit=100", request: { setupRequest: getPage } },
    {
      // 80% reads (60% by id, 20% range pages), 20% single writes.
      name: "mix 80% read / 20% write",
      request: {
        setupRequest: (r) => {
          const dice = Math.random()
          return dice < 0.6 ? getById(r) : dice < 0.8 ? getPage(r) : post(r)
        }
      }
    }
  ]
}

/** Nearest-rank percentile of sorted samples. */
const percentile = (sorted: Float64Array, p: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]

const measure = async (base: string, scenario: Scenario, connections: number, duration: number): Promise<Row> => {
  // autocannon's own histogram keeps whole milliseconds; sub-millisecond reads need the raw timings.
  const latencies: Array<number> = []
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      { url: base, connections, duration, requests: [scenario.request] },
      (err, res) => err ? reject(err) : resolve(res)
    )
    instance.on("response", (_client, status, _bytes, ms) => {
      if (status >= 200 && status < 300) latencies.push(ms)
    })
  })
  const sorted = Float64Array.from(latencies).toSorted()
  const rps = result.requests.total / result.duration
  return {
    name: scenario.name,
    rps,
    percentiles: [0.5, 0.9, 0.99, 0.999].map((p) => percentile(sorted, p)),
    non2xx: result.non2xx,
    errors: result.errors,
    ...(scenario.recordsPerRequest !== undefined
      ? { recordsPerSecond: (sorted.length / result.duration) * scenario.recordsPerRequest }
      : {})
  }
}

// ---------------------------------------------------------------------------
// Report

const formatTable = (rows: ReadonlyArray<Row>): string => {
  const header = ["scenario", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "non-2xx", "errors"]
  const cells = rows.map((r) => [
    r.name,
    Math.round(r.rps).toLocaleString("en-US"),
    ...r.percentiles.map((ms) => ms.toFixed(2)),
    String(r.non2xx),
    String(r.errors)
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)))
  // Scenario names left-aligned, numbers right-aligned.
  const line = (c: ReadonlyArray<string>) =>
    c.map((v, i) => i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i])).join("  ").trimEnd()
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...cells.map(line)].join("\n")
}

const main = async () => {
  const { values } = parseArgs({ options: { rows: { type: "string" } } })
  const rows = values.rows === undefined ? 0 : parseCount("--rows", values.rows)
  const duration = envCount("BENCH_DURATION", 10)
  const connections = envCount("BENCH_CONNECTIONS", 50)

  const given = process.env.BENCH_DATABASE_URL
  let created: string | undefined
  let server: ChildProcess | undefined
  const cleanup = async () => {
    if (server !== undefined) await stopServer(server)
    if (created !== undefined) await dropDatabase(created)
    server = created = undefined
  }
  // Ctrl-C still stops the server and drops the database.
  process.once("SIGINT", () => {
    progress("interrupted, cleaning up")
    void cleanup().finally(() => process.exit(130))
  })

  try {
    if (given !== undefined) await checkReachable(given)
    else created = await createDatabase()
    const databaseUrl = given ?? created!
    const port = await freePort()
    const base = `http://${HOST}:${port}`
    progress(`starting the server on ${base} (database ${new URL(databaseUrl).pathname.slice(1)})`)
    server = startServer(databaseUrl, port)
    await waitReady(base, server)

    const ids: Array<string> = []
    if (rows > 0) {
      progress(`seeding ${rows.toLocaleString("en-US")} rows`)
      const seeded = await seed({ databaseUrl, rows, sampleIds: PRECREATE })
      progress(describeSeed(seeded))
      ids.push(...seeded.sampleIds)
    }
    progress(`writing ${PRECREATE.toLocaleString("en-US")} records through the API`)
    ids.push(...await precreate(base))
    const total = await psql(databaseUrl, "SELECT count(*) FROM records")
    const postgres = await psql(databaseUrl, "SHOW server_version")

    const results: Array<Row> = []
    for (const scenario of scenarios(ids)) {
      progress(`${scenario.name}: ${duration} s, ${connections} connections`)
      results.push(await measure(base, scenario, connections, duration))
    }

    console.log(
      [
        `machine: ${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? "unknown cpu"}), ` +
        `${Math.round(totalmem() / 2 ** 30)} GiB RAM, ${process.platform}/${process.arch}`,
        `node ${process.version}, PostgreSQL ${postgres}, DATABASE_POOL_MAX ${
          process.env.DATABASE_POOL_MAX ?? "10 (default)"
        }`,
        `load: ${connections} connections, ${duration} s per scenario, ` +
        `${Number(total).toLocaleString("en-US")} records in the table before the run, ` +
        `reads by id over ${ids.length.toLocaleString("en-US")} ids`,
        "latency percentiles are over 2xx responses; load generator, server and PostgreSQL share this machine",
        "",
        formatTable(results),
        ...results.flatMap((r) =>
          r.recordsPerSecond !== undefined
            ? [`${r.name}: ${Math.round(r.recordsPerSecond).toLocaleString("en-US")} records/s`]
            : []
        )
      ].join("\n")
    )
  } finally {
    await cleanup()
  }
}

main().catch((e: unknown) => {
  console.error(`bench: ${e instanceof Error ? e.message : String(e)}`)
  process.exitCode = 1
})
