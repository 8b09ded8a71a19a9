/**
 * `pnpm bench [--rows N] [--only a,b,…]`: measures the HTTP API under load on this machine.
 *
 * Creates a throwaway database on the local PostgreSQL (or uses BENCH_DATABASE_URL),
 * starts the server on it on a free port with the Redis record cache (under a key
 * prefix of its own), optionally seeds N rows (see seed.ts), writes 10,000 records
 * through the API so reads have ids, runs each scenario with autocannon and prints
 * one table. Then stops the servers, drops the database it created and deletes its
 * Redis keys.
 *
 * Reads by id are measured twice, in the same run:
 * - cached: the ids written through the API, which the server put in the cache on
 *   insert. A sample is read first and its Cache-Status counted (if under 99 % hit,
 *   every id is read once to fill the cache); Cache-Status is counted while measuring too.
 * - uncached: a second server process on the same database with CACHE_MAX_ENTRIES=1,
 *   RECORD_CACHE_BYTES=0 and no Redis, so its cache holds one record and every read
 *   goes to PostgreSQL.
 *   The ids are sampled over the whole table, not only the newest records.
 *
 * Scenarios, for `--only` (comma-separated; default all): post, post-batch,
 * get-cached, get-uncached, get-range, mix, post-plain, post-schema. The last
 * two post one body of 10 properties to a stream without a schema and to one
 * with a 10-property schema: what validation costs (SPEC §2a). With `--only`, records are written
 * through the API only when get-cached or mix is selected or the table is empty.
 *
 * Environment: BENCH_DURATION (seconds per scenario, default 10), BENCH_CONNECTIONS
 * (default 50), BENCH_DATABASE_URL (an existing, possibly non-empty database: kept),
 * BENCH_REDIS_URL (else REDIS_URL, else redis://127.0.0.1:6379; `off` for the
 * in-process cache). Redis is checked and cleaned with redis-cli; when it does not
 * answer, the bench says so and uses the in-process cache (CACHE_MAX_ENTRIES).
 * REDIS_CLUSTER_NODES is ignored. Other variables (e.g. DATABASE_POOL_MAX) reach
 * the servers unchanged.
 */
import autocannon from "autocannon"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { once } from "node:events"
import { createServer } from "node:net"
import { availableParallelism, cpus, totalmem } from "node:os"
import { createInterface } from "node:readline"
import { parseArgs } from "node:util"
import { describeSeed, KEYS_PER_STREAM, parseCount, psql, seed, STREAMS } from "./seed.ts"

const ADMIN_URL = "postgres://root@127.0.0.1:5432/postgres"
const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
const HOST = "127.0.0.1"
const PRECREATE = 10_000
const BATCH = 100
/** Ids sampled over the whole table for uncached reads by id. */
const SPREAD_IDS = 10_000
/** Reads made to check Cache-Status before measuring reads by id. */
const CHECK_SAMPLE = 1_000
const CACHE_HIT = "strata; hit"
const READY_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 15_000
const REDIS_TIMEOUT_MS = 5_000
const CACHE_UP_TIMEOUT_MS = 45_000

const SCENARIO_KEYS = [
  "post",
  "post-batch",
  "get-cached",
  "get-uncached",
  "get-range",
  "mix",
  "post-plain",
  "post-schema"
] as const
type ScenarioKey = (typeof SCENARIO_KEYS)[number]

interface Scenario {
  /** The name `--only` selects it by. */
  readonly key: ScenarioKey
  readonly name: string
  readonly request: autocannon.Request
  /** Records stored per successful request, to report records/s next to requests/s. */
  readonly recordsPerRequest?: number
  /** Measured against the server without a cache, instead of the one with it. */
  readonly uncachedServer?: boolean
  /** Count `Cache-Status: strata; hit` among the 2xx responses. */
  readonly countCacheStatus?: boolean
}

interface Hits {
  readonly hits: number
  readonly total: number
}

interface Row {
  readonly name: string
  readonly rps: number
  /** Latency percentiles of 2xx responses, in ms: p50, p90, p99, p99.9. */
  readonly percentiles: ReadonlyArray<number>
  readonly non2xx: number
  readonly errors: number
  readonly recordsPerSecond?: number
  readonly cacheHits?: Hits
}

const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(Math.random() * items.length)]

/** Up to `n` distinct items, chosen uniformly. */
const sample = <A>(items: ReadonlyArray<A>, n: number): Array<A> => {
  const copy = [...items]
  const k = Math.min(n, copy.length)
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(Math.random() * (copy.length - i))
    ;[copy[i], copy[j]] = [copy[j], copy[i]]
  }
  return copy.slice(0, k)
}

const envCount = (name: string, fallback: number): number => {
  const text = process.env[name]
  return text === undefined || text === "" ? fallback : parseCount(name, text)
}

const progress = (message: string) => console.error(`bench: ${message}`)

const count = (n: number) => n.toLocaleString("en-US")

const ratio = (h: Hits) =>
  `${count(h.hits)}/${count(h.total)} hit` + (h.total > 0 ? ` (${(100 * h.hits / h.total).toFixed(2)} %)` : "")

const errorText = (e: unknown) => e instanceof Error ? e.message : String(e)

// ---------------------------------------------------------------------------
// Database, cache and server lifecycle

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

/**
 * Up to `n` ids spread uniformly over the whole table (every partition, old and
 * new rows alike). On a large table, one random row from each of about 1.5 n
 * random pages (TABLESAMPLE SYSTEM reads only those pages); on a small one, n
 * random rows.
 */
const sampleSpreadIds = async (databaseUrl: string, n: number): Promise<Array<string>> => {
  const pages = Number(
    await psql(
      databaseUrl,
      `SELECT coalesce(sum(pg_relation_size(inhrelid)), 0) / current_setting('block_size')::bigint
         FROM pg_inherits WHERE inhparent = 'records'::regclass`
    )
  )
  const percent = (150 * n) / pages
  const sql = percent >= 75
    ? `SELECT id FROM records ORDER BY random() LIMIT ${n}`
    : `SELECT id FROM (
         SELECT DISTINCT ON (tableoid, (ctid::text::point)[0]) id
           FROM records TABLESAMPLE SYSTEM (${percent.toFixed(6)})
          ORDER BY tableoid, (ctid::text::point)[0], random()
       ) one_per_page ORDER BY random() LIMIT ${n}`
  const out = await psql(databaseUrl, sql)
  return out === "" ? [] : out.split("\n")
}

/** Runs redis-cli against `url` and answers its output; fails with its message or after a timeout. */
const redisCli = (url: string, args: ReadonlyArray<string>): Promise<string> =>
  new Promise((resolve, reject) => {
    const child = spawn("redis-cli", ["-u", url, "--no-auth-warning", ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      timeout: REDIS_TIMEOUT_MS
    })
    let out = ""
    let err = ""
    child.stdout.setEncoding("utf8").on("data", (s: string) => out += s)
    child.stderr.setEncoding("utf8").on("data", (s: string) => err += s)
    child.on("error", (e: NodeJS.ErrnoException) =>
      reject(e.code === "ENOENT" ? new Error("redis-cli is not on PATH") : e))
    child.on("close", (code, signal) =>
      code === 0
        ? resolve(out.trim())
        : reject(new Error(err.trim() || out.trim() || `redis-cli exited ${code ?? signal}`)))
  })

/** Deletes every key under `prefix` (SCAN, then DEL in batches through one redis-cli); answers how many. */
const deleteRedisKeys = async (url: string, prefix: string): Promise<number> => {
  const args = ["-u", url, "--no-auth-warning"]
  const scan = spawn("redis-cli", [...args, "--scan", "--pattern", `${prefix}*`], {
    stdio: ["ignore", "pipe", "inherit"]
  })
  const del = spawn("redis-cli", args, { stdio: ["pipe", "ignore", "inherit"] })
  const exited = (child: ChildProcess) =>
    new Promise<void>((resolve, reject) => {
      child.on("error", reject)
      child.on("close", (code) => code === 0 ? resolve() : reject(new Error(`redis-cli exited ${code}`)))
    })
  const scanned = exited(scan)
  const deleted = exited(del)
  del.stdin.on("error", () => {}) // the exit status carries the real failure
  let total = 0
  let batch: Array<string> = []
  const flush = async () => {
    if (batch.length === 0) return
    // Keys are `<prefix>r:<tenant>:<uuid>`: no spaces or quotes to escape.
    if (!del.stdin.write(`DEL ${batch.join(" ")}\n`)) await once(del.stdin, "drain")
    batch = []
  }
  for await (const line of createInterface({ input: scan.stdout })) {
    if (line === "") continue
    batch.push(line)
    total++
    if (batch.length === 500) await flush()
  }
  await flush()
  del.stdin.end()
  await Promise.all([scanned, deleted])
  return total
}

const redactUrl = (text: string): string => {
  const url = URL.parse(text)
  if (url === null) return "(unparseable URL)"
  if (url.password !== "") url.password = "***"
  return url.toString()
}

interface CacheSetup {
  /** Set when the server with the cache uses Redis. */
  readonly redis?: { readonly url: string; readonly prefix: string }
  /** Environment for the server with the cache (undefined: removed). */
  readonly env: Readonly<Record<string, string | undefined>>
  readonly description: string
}

/** Redis when it answers (a fresh key prefix for this run), else the in-process cache. */
const setupCache = async (): Promise<CacheSetup> => {
  const memory = {
    env: { REDIS_URL: undefined, REDIS_CLUSTER_NODES: undefined },
    description: `in-process cache (CACHE_MAX_ENTRIES ${process.env.CACHE_MAX_ENTRIES ?? "10000, the default"})`
  }
  const url = process.env.BENCH_REDIS_URL ?? process.env.REDIS_URL ?? DEFAULT_REDIS_URL
  if (url === "off" || url === "") return memory
  try {
    const pong = await redisCli(url, ["PING"])
    if (pong !== "PONG") throw new Error(pong || "no answer to PING")
    const version = /redis_version:(\S+)/.exec(await redisCli(url, ["INFO", "server"]))?.[1] ?? "(unknown version)"
    const prefix = `strata-bench-${randomBytes(4).toString("hex")}:`
    return {
      redis: { url, prefix },
      env: { REDIS_URL: url, REDIS_KEY_PREFIX: prefix, REDIS_CLUSTER_NODES: undefined },
      description: `Redis ${version} at ${redactUrl(url)}, key prefix ${prefix}`
    }
  } catch (e) {
    const why = `Redis at ${redactUrl(url)} does not answer (${errorText(e)})`
    progress(`${why}: falling back to the ${memory.description}`)
    return { ...memory, description: `${memory.description}, because ${why}` }
  }
}

const freePort = async (): Promise<number> => {
  const server = createServer().listen(0, HOST)
  await once(server, "listening")
  const address = server.address()
  server.close()
  if (address === null || typeof address === "string") throw new Error("could not pick a free port")
  return address.port
}

const startServer = (
  databaseUrl: string,
  port: number,
  overrides: Readonly<Record<string, string | undefined>>
): ChildProcess => {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOST,
    PORT: String(port),
    DATABASE_URL: databaseUrl,
    ACCESS_LOG: "false",
    LOG_LEVEL: "Warn"
  }
  for (const [name, value] of Object.entries(overrides)) {
    if (value === undefined) delete env[name]
    else env[name] = value
  }
  return spawn(process.execPath, ["packages/server/src/main.ts"], {
    cwd: new URL("..", import.meta.url),
    stdio: ["ignore", "inherit", "inherit"],
    env
  })
}

/** The bench's API key: tenant `default` (the one `pnpm bench:seed` fills), no practical rate limit. */
let auth: Record<string, string> = {}

const cli = (databaseUrl: string, args: ReadonlyArray<string>) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, ["packages/server/src/cli/main.ts", ...args], {
      cwd: new URL("..", import.meta.url),
      env: { ...process.env, DATABASE_URL: databaseUrl, LOG_LEVEL: "Warn" }
    }, (error, stdout, stderr) => resolve({ code: error === null ? 0 : 1, stdout, stderr }))
  })

const makeBenchKey = async (databaseUrl: string): Promise<void> => {
  await cli(databaseUrl, ["tenants", "create", "default"]) // fails harmlessly when it exists
  const made = await cli(databaseUrl, [
    "keys",
    "create",
    "--tenant",
    "default",
    "--scopes",
    "records:read,records:write,schemas:write",
    "--rate-limit-rps",
    "1000000000",
    "--rate-limit-burst",
    "1000000000"
  ])
  if (made.code !== 0) throw new Error(`pnpm strata keys create failed: ${made.stderr}`)
  auth = { authorization: `Bearer ${made.stdout.trim()}` }
}

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

/** A realistic 10-property order and its schema, for the validation scenarios. */
const ORDER_SCHEMA = {
  type: "object",
  properties: {
    orderId: { type: "string", minLength: 1, maxLength: 40 },
    customer: { type: "string", pattern: "^customer-[0-9]+$" },
    amount: { type: "number", minimum: 0 },
    currency: { enum: ["EUR", "USD", "GBP"] },
    quantity: { type: "integer", minimum: 1, maximum: 1000 },
    paid: { type: "boolean" },
    email: { type: "string", format: "email" },
    placedAt: { type: "string", format: "date-time" },
    tags: { type: "array", items: { type: "string" }, maxItems: 10 },
    shipping: {
      type: "object",
      properties: { city: { type: "string" }, country: { type: "string", pattern: "^[A-Z]{2}$" } },
      required: ["city", "country"]
    }
  },
  required: ["orderId", "customer", "amount", "currency", "quantity", "paid"],
  additionalProperties: false
}

const order = (stream: string) => ({
  stream,
  key: `customer-${Math.floor(Math.random() * KEYS_PER_STREAM)}`,
  data: {
    orderId: randomBytes(8).toString("hex"),
    customer: `customer-${Math.floor(Math.random() * 1000)}`,
    amount: Math.round(Math.random() * 100_000) / 100,
    currency: pick(["EUR", "USD", "GBP"]),
    quantity: 1 + Math.floor(Math.random() * 9),
    paid: Math.random() < 0.5,
    email: "buyer@example.com",
    placedAt: new Date().toISOString(),
    tags: ["web", "promo"],
    shipping: { city: "Lyon", country: "FR" }
  }
})

const registerOrderSchema = async (base: string): Promise<void> => {
  const res = await fetch(`${base}/streams/bench.schema/schema`, {
    method: "PUT",
    headers: { ...auth, "content-type": "application/json" },
    body: JSON.stringify({ schema: ORDER_SCHEMA })
  })
  if (res.status !== 201 && res.status !== 200) {
    throw new Error(`PUT /streams/bench.schema/schema answered ${res.status}: ${await res.text()}`)
  }
}

/** Writes PRECREATE records through the API, spread over the last year, and answers their ids. */
const precreate = async (base: string): Promise<Array<string>> => {
  const ids: Array<string> = []
  const now = Date.now()
  const postBatch = async () => {
    const records = Array.from({ length: BATCH }, () => newRecord(new Date(now - Math.random() * 365 * 86_400_000)))
    const res = await fetch(`${base}/data/batch`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
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

/**
 * Waits (at most CACHE_UP_TIMEOUT_MS) until /health/ready reports the cache up: after
 * heavy writes the server's circuit breaker may skip the cache for up to 30 s.
 * Answers the seconds waited, or undefined when it stayed down.
 */
const waitCacheUp = async (base: string): Promise<number | undefined> => {
  const started = Date.now()
  while (Date.now() - started < CACHE_UP_TIMEOUT_MS) {
    const cache = await fetch(`${base}/health/ready`, { signal: AbortSignal.timeout(2_000) })
      .then((r) => r.json() as Promise<{ dependencies?: { cache?: string } }>)
      .then((body) => body.dependencies?.cache, () => undefined)
    if (cache === "up") return (Date.now() - started) / 1000
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
  return undefined
}

/** How many of `ids` have a key in Redis, as the server's record cache names them for the default tenant. */
const countRedisKeys = async (url: string, prefix: string, ids: ReadonlyArray<string>): Promise<number> =>
  ids.length === 0 ? 0 : Number(await redisCli(url, ["EXISTS", ...ids.map((id) => `${prefix}r:default:${id}`)]))

const cacheStatus = (headers: autocannon.Request["headers"]): unknown =>
  headers?.["cache-status"] ?? headers?.["Cache-Status"]

/** Reads every id once (a few at a time) and counts `Cache-Status: strata; hit`; every read must answer 200. */
const readAll = async (base: string, ids: ReadonlyArray<string>): Promise<Hits> => {
  let hits = 0
  let next = 0
  const lanes = 8
  await Promise.all(Array.from({ length: lanes }, async () => {
    while (next < ids.length) {
      const id = ids[next++]
      const res = await fetch(`${base}/data/${id}`, { headers: auth, signal: AbortSignal.timeout(10_000) })
      await res.arrayBuffer()
      if (res.status !== 200) throw new Error(`GET /data/${id} answered ${res.status}`)
      if (res.headers.get("cache-status") === CACHE_HIT) hits++
    }
  }))
  return { hits, total: ids.length }
}

const scenarios = (
  ids: ReadonlyArray<string>,
  cachedIds: ReadonlyArray<string>,
  spreadIds: ReadonlyArray<string>
): Array<Scenario> => {
  const json = { ...auth, "content-type": "application/json" }
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
  const orders = (stream: string) => Array.from({ length: 1_000 }, () => JSON.stringify(order(stream)))
  const postTo = (bodies: ReadonlyArray<string>) => (request: autocannon.Request): autocannon.Request => ({
    ...request,
    method: "POST",
    path: "/data",
    headers: json,
    body: pick(bodies)
  })
  const getByIdFrom = (list: ReadonlyArray<string>) => (request: autocannon.Request): autocannon.Request => ({
    ...request,
    method: "GET",
    path: `/data/${pick(list)}`,
    body: ""
  })
  const getById = getByIdFrom(ids)
  const getPage = (request: autocannon.Request): autocannon.Request => ({
    ...request,
    method: "GET",
    path: `/data?stream=${pick(STREAMS)}&limit=100`,
    body: ""
  })
  return [
    { key: "post", name: "POST /data", request: { setupRequest: post } },
    {
      key: "post-batch",
      name: `POST /data/batch (${BATCH})`,
      request: {
        setupRequest: (r) => ({ ...r, method: "POST", path: "/data/batch", headers: json, body: pick(batches) })
      },
      recordsPerRequest: BATCH
    },
    {
      key: "get-cached",
      name: "GET /data/{id} cached",
      request: { setupRequest: getByIdFrom(cachedIds) },
      countCacheStatus: true
    },
    {
      key: "get-uncached",
      name: "GET /data/{id} uncached",
      request: { setupRequest: getByIdFrom(spreadIds) },
      uncachedServer: true,
      countCacheStatus: true
    },
    { key: "get-range", name: "GET /data?stream&limit=100", request: { setupRequest: getPage } },
    {
      key: "post-plain",
      name: "POST /data, 10 properties, no schema",
      request: { setupRequest: postTo(orders("bench.plain")) }
    },
    {
      key: "post-schema",
      name: "POST /data, 10 properties, 10-property schema",
      request: { setupRequest: postTo(orders("bench.schema")) }
    },
    {
      // 80% reads (60% by id, 20% range pages), 20% single writes.
      key: "mix",
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
  let hits = 0
  let counted = 0
  const request: autocannon.Request = scenario.countCacheStatus === true
    ? {
      ...scenario.request,
      onResponse: (status, _body, _context, headers) => {
        if (status < 200 || status >= 300) return
        counted++
        if (cacheStatus(headers) === CACHE_HIT) hits++
      }
    }
    : scenario.request
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      { url: base, connections, duration, headers: auth, requests: [request] },
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
      : {}),
    ...(scenario.countCacheStatus === true ? { cacheHits: { hits, total: counted } } : {})
  }
}

// ---------------------------------------------------------------------------
// Report

const formatTable = (rows: ReadonlyArray<Row>): string => {
  const header = ["scenario", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "non-2xx", "errors"]
  const cells = rows.map((r) => [
    r.name,
    count(Math.round(r.rps)),
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

const parseOnly = (text: string | undefined): ReadonlySet<ScenarioKey> => {
  if (text === undefined) return new Set(SCENARIO_KEYS)
  const keys = text.split(",").map((s) => s.trim()).filter((s) => s !== "")
  const unknown = keys.filter((k) => !(SCENARIO_KEYS as ReadonlyArray<string>).includes(k))
  if (keys.length === 0 || unknown.length > 0) {
    throw new Error(`--only takes a comma-separated list of ${SCENARIO_KEYS.join(", ")}; got ${text}`)
  }
  return new Set(keys as Array<ScenarioKey>)
}

const main = async () => {
  const { values } = parseArgs({ options: { rows: { type: "string" }, only: { type: "string" } } })
  const rows = values.rows === undefined ? 0 : parseCount("--rows", values.rows)
  const only = parseOnly(values.only)
  const duration = envCount("BENCH_DURATION", 10)
  const connections = envCount("BENCH_CONNECTIONS", 50)

  const given = process.env.BENCH_DATABASE_URL
  let created: string | undefined
  let redis: CacheSetup["redis"]
  const servers: Array<ChildProcess> = []
  const cleanup = async () => {
    const steps: Array<[string, () => Promise<unknown>]> = [
      ["stopping the servers", () => Promise.all(servers.splice(0).map(stopServer))],
      ["dropping the database", async () => {
        const name = created
        created = undefined
        if (name !== undefined) await dropDatabase(name)
      }],
      ["deleting the Redis keys", async () => {
        if (redis === undefined) return
        const { url, prefix } = redis
        redis = undefined
        progress(`deleted ${count(await deleteRedisKeys(url, prefix))} Redis keys under ${prefix}`)
      }]
    ]
    // Each step runs even when an earlier one failed.
    for (const [what, step] of steps) {
      await step().catch((e: unknown) => {
        progress(`${what} failed: ${errorText(e)}`)
        process.exitCode = 1
      })
    }
  }
  // Ctrl-C still stops the servers, drops the database and deletes the Redis keys.
  process.once("SIGINT", () => {
    progress("interrupted, cleaning up")
    void cleanup().finally(() => process.exit(130))
  })

  try {
    if (given !== undefined) await checkReachable(given)
    else created = await createDatabase()
    const databaseUrl = given ?? created!
    const cache = await setupCache()
    redis = cache.redis
    const port = await freePort()
    const base = `http://${HOST}:${port}`
    progress(
      `starting the server on ${base} (database ${new URL(databaseUrl).pathname.slice(1)}, ${cache.description})`
    )
    const server = startServer(databaseUrl, port, cache.env)
    servers.push(server)
    await waitReady(base, server)
    await makeBenchKey(databaseUrl)
    if (only.has("post-schema")) await registerOrderSchema(base)

    // The second server starts once the first has migrated the database.
    let uncachedBase = ""
    if (only.has("get-uncached")) {
      const port = await freePort()
      uncachedBase = `http://${HOST}:${port}`
      progress(
        `starting the server without a cache on ${uncachedBase} (CACHE_MAX_ENTRIES=1, RECORD_CACHE_BYTES=0, no Redis)`
      )
      const uncached = startServer(databaseUrl, port, {
        REDIS_URL: undefined,
        REDIS_CLUSTER_NODES: undefined,
        CACHE_MAX_ENTRIES: "1",
        RECORD_CACHE_BYTES: "0"
      })
      servers.push(uncached)
      await waitReady(uncachedBase, uncached)
    }

    const ids: Array<string> = []
    if (rows > 0) {
      progress(`seeding ${count(rows)} rows`)
      const seeded = await seed({ databaseUrl, rows, sampleIds: PRECREATE })
      progress(describeSeed(seeded))
      ids.push(...seeded.sampleIds)
    }
    const empty = (await psql(databaseUrl, "SELECT NOT EXISTS (SELECT 1 FROM records)")) === "t"
    let precreated: Array<string> = []
    if (only.has("get-cached") || only.has("mix") || empty) {
      progress(`writing ${count(PRECREATE)} records through the API`)
      precreated = await precreate(base)
      ids.push(...precreated)
    } else progress("writing no records through the API: no selected scenario needs them")
    const total = await psql(databaseUrl, "SELECT count(*) FROM records")
    const postgres = await psql(databaseUrl, "SHOW server_version")

    // The in-process cache keeps the newest CACHE_MAX_ENTRIES records: read only ids it can hold.
    const capacity = cache.redis !== undefined ? Infinity : envCount("CACHE_MAX_ENTRIES", 10_000)
    const cachedIds = precreated.slice(-Math.min(precreated.length, capacity))
    let spreadIds: Array<string> = []
    if (only.has("get-uncached")) {
      progress(`sampling ${count(SPREAD_IDS)} ids over the whole table`)
      spreadIds = await sampleSpreadIds(databaseUrl, SPREAD_IDS)
      if (spreadIds.length === 0) throw new Error("the table is empty: no ids to read")
    }

    const notes: Array<string> = []
    const results: Array<Row> = []
    for (const scenario of scenarios(ids, cachedIds, spreadIds).filter((s) => only.has(s.key))) {
      const target = scenario.uncachedServer === true ? uncachedBase : base
      if (scenario.key === "get-cached") {
        const waited = await waitCacheUp(base)
        const health = waited === undefined
          ? `still not up after ${CACHE_UP_TIMEOUT_MS / 1000} s`
          : waited >= 1
          ? `up after waiting ${waited.toFixed(1)} s (circuit breaker open)`
          : "up"
        progress(`cache health: ${health}`)
        notes.push(`${scenario.name}: cache health on /health/ready before measuring: ${health}`)
        const checked = sample(cachedIds, CHECK_SAMPLE)
        if (cache.redis !== undefined) {
          const present = await countRedisKeys(cache.redis.url, cache.redis.prefix, checked)
          const line = `${count(present)}/${
            count(checked.length)
          } of a sample of the ids were keys in Redis before any read`
          progress(line)
          notes.push(`${scenario.name}: ${line} (written on insert)`)
        }
        const before = await readAll(base, checked)
        progress(`cache check on ${count(before.total)} of the cached ids: ${ratio(before)}`)
        let check = `sample of ${count(before.total)} read just before measuring: ${ratio(before)}`
        if (before.hits < 0.99 * before.total) {
          progress(`reading all ${count(cachedIds.length)} cached ids once to fill the cache`)
          await readAll(base, cachedIds)
          const after = await readAll(base, sample(cachedIds, CHECK_SAMPLE))
          progress(`cache check after filling: ${ratio(after)}`)
          check += `; after reading every id once: ${ratio(after)}`
        }
        notes.push(`${scenario.name}: Cache-Status on a ${check}`)
      }
      if (scenario.key === "get-uncached") {
        // Also warms the second server up, as the earlier scenarios did the first.
        const before = await readAll(uncachedBase, sample(spreadIds, CHECK_SAMPLE))
        progress(`uncached server check on ${count(before.total)} ids: ${ratio(before)}`)
        notes.push(`${scenario.name}: Cache-Status on a sample of ${count(before.total)} read before: ${ratio(before)}`)
      }
      progress(`${scenario.name}: ${duration} s, ${connections} connections`)
      results.push(await measure(target, scenario, connections, duration))
    }

    const approach = [
      `server A (every scenario but the uncached one): ${cache.description}`,
      ...(only.has("get-uncached")
        ? [
          "server B (GET /data/{id} uncached only): a second server process on the same database with " +
          "CACHE_MAX_ENTRIES=1, RECORD_CACHE_BYTES=0 and no Redis; its cache holds one record, so reads go to PostgreSQL"
        ]
        : []),
      ...(only.has("get-cached")
        ? [
          `GET /data/{id} cached: server A, over the ${
            count(cachedIds.length)
          } ids written through the API just before (cached on insert)`
        ]
        : []),
      ...(only.has("get-uncached")
        ? [
          `GET /data/{id} uncached: server B, over ${
            count(spreadIds.length)
          } ids sampled uniformly over the whole table`
        ]
        : [])
    ]
    console.log(
      [
        `machine: ${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? "unknown cpu"}), ` +
        `${Math.round(totalmem() / 2 ** 30)} GiB RAM, ${process.platform}/${process.arch}`,
        `node ${process.version}, PostgreSQL ${postgres}, DATABASE_POOL_MAX ${
          process.env.DATABASE_POOL_MAX ?? "10 (default)"
        }`,
        `load: ${connections} connections, ${duration} s per scenario, ` +
        `${count(Number(total))} records in the table before the run` +
        (only.has("mix") ? `, mix reads by id over ${count(ids.length)} ids` : ""),
        ...approach,
        "latency percentiles are over 2xx responses; load generator, servers, PostgreSQL" +
        (cache.redis !== undefined ? " and Redis" : "") + " share this machine",
        "",
        formatTable(results),
        ...results.flatMap((r) =>
          r.recordsPerSecond !== undefined ? [`${r.name}: ${count(Math.round(r.recordsPerSecond))} records/s`] : []
        ),
        ...notes,
        ...results.flatMap((r) =>
          r.cacheHits !== undefined ? [`${r.name}: Cache-Status while measuring: ${ratio(r.cacheHits)} of 2xx`] : []
        )
      ].join("\n")
    )
  } finally {
    await cleanup()
  }
}

main().catch((e: unknown) => {
  console.error(`bench: ${errorText(e)}`)
  process.exitCode = 1
})
