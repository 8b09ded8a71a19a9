/**
 * `bench [--rows N] [--only a,b,…]`: measures the HTTP API under load on this machine.
 *
 * Creates a throwaway database on the local PostgreSQL (or uses --database-url),
 * starts the server on it on a free port with the Redis record cache (under a key
 * prefix of its own), optionally seeds N rows (see Seed.ts), writes 10,000 records
 * through the API so reads have ids, runs each scenario with autocannon and prints
 * one table. Every one of those is a scoped resource: when the run ends, fails or
 * is interrupted (Ctrl-C), the servers stop, the database it created is dropped
 * and its Redis keys are deleted.
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
 * get-cached, get-uncached, get-range, mix, post-plain, post-schema,
 * post-indexed. The last three post one body of 10 properties to a stream
 * without a schema, to one with a 10-property schema (what validation costs,
 * README: Schemas) and to one with two declared indexes, a btree on `customer`
 * and a GIN on `tags` (what they cost a write, README: Declared indexes). With `--only`, records are written
 * through the API only when get-cached or mix is selected or the table is empty.
 *
 * Options (main.ts; each also read from the variable named): --duration
 * (BENCH_DURATION, seconds per scenario, default 10), --connections
 * (BENCH_CONNECTIONS, default 50), --database-url (BENCH_DATABASE_URL: an existing,
 * possibly non-empty database, kept), --redis-url (BENCH_REDIS_URL, else REDIS_URL,
 * else redis://127.0.0.1:6379; `off` for the in-process cache). Redis is checked
 * and cleaned with redis-cli; when it does not answer, the bench says so and uses
 * the in-process cache (CACHE_MAX_ENTRIES). REDIS_CLUSTER_NODES is ignored. Other
 * variables (e.g. DATABASE_POOL_MAX) reach the servers unchanged.
 */
import type autocannon from "autocannon"
import { Effect, Option } from "effect"
import { randomBytes } from "node:crypto"
import { availableParallelism, cpus, totalmem } from "node:os"
import { attempt, BenchError } from "./BenchError.ts"
import { type Auth, count, formatTable, type Load, measure, pick, ratio, readAll, type Row, sample } from "./Measure.ts"
import { checkReachable, databaseName, psql, query, throwawayDatabase } from "./Postgres.ts"
import { benchCache, countRecordKeys } from "./Redis.ts"
import { describeSeed, KEYS_PER_STREAM, parseCount, seed, STREAMS, TENANT } from "./Seed.ts"
import { benchKey, serverEnv, serverProcess } from "./Server.ts"

export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
const PRECREATE = 10_000
const BATCH = 100
/** Ids sampled over the whole table for uncached reads by id. */
const SPREAD_IDS = 10_000
/** Reads made to check Cache-Status before measuring reads by id. */
const CHECK_SAMPLE = 1_000
const CACHE_UP_TIMEOUT_MS = 45_000

export const SCENARIO_KEYS = [
  "post",
  "post-batch",
  "get-cached",
  "get-uncached",
  "get-range",
  "mix",
  "post-plain",
  "post-schema",
  "post-indexed"
] as const
export type ScenarioKey = (typeof SCENARIO_KEYS)[number]

interface Scenario extends Load {
  /** The name `--only` selects it by. */
  readonly key: ScenarioKey
  /** Measured against the server without a cache, instead of the one with it. */
  readonly uncachedServer?: boolean
}

const progress = (message: string) => console.error(`bench: ${message}`)

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

const registerOrderSchema = async (base: string, auth: Auth): Promise<void> => {
  const res = await fetch(`${base}/streams/bench.schema/schema`, {
    method: "PUT",
    headers: { ...auth, "content-type": "application/json" },
    body: JSON.stringify({ schema: ORDER_SCHEMA })
  })
  if (res.status !== 201 && res.status !== 200) {
    throw new Error(`PUT /streams/bench.schema/schema answered ${res.status}: ${await res.text()}`)
  }
}

/** Declares the indexes of the post-indexed scenario and waits until they are built. */
const declareOrderIndexes = async (base: string, auth: Auth): Promise<void> => {
  const url = `${base}/streams/bench.indexed/indexes`
  const res = await fetch(url, {
    method: "PUT",
    headers: { ...auth, "content-type": "application/json" },
    body: JSON.stringify({ indexes: [{ path: "customer" }, { path: "tags", kind: "gin" }] })
  })
  if (res.status !== 200) throw new Error(`PUT ${url} answered ${res.status}: ${await res.text()}`)
  for (const started = Date.now(); Date.now() - started < 120_000;) {
    const listed = (await (await fetch(url, { headers: auth })).json()) as {
      readonly indexes: ReadonlyArray<{ readonly state: string }>
    }
    if (listed.indexes.every((i) => i.state === "ready")) return
    if (listed.indexes.some((i) => i.state === "failed")) throw new Error(`an index of ${url} failed to build`)
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  throw new Error(`the indexes of ${url} were not ready within 2 minutes`)
}

/** Writes PRECREATE records through the API, spread over the last year, and answers their ids. */
const precreate = async (base: string, auth: Auth, signal: AbortSignal): Promise<Array<string>> => {
  const ids: Array<string> = []
  const now = Date.now()
  const postBatch = async () => {
    const records = Array.from({ length: BATCH }, () => newRecord(new Date(now - Math.random() * 365 * 86_400_000)))
    const res = await fetch(`${base}/data/batch`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ records }),
      signal: AbortSignal.any([signal, AbortSignal.timeout(30_000)])
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

const scenarios = (
  auth: Auth,
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
      key: "post-indexed",
      name: "POST /data, 10 properties, 2 declared indexes",
      request: { setupRequest: postTo(orders("bench.indexed")) }
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

// ---------------------------------------------------------------------------
// Report

const resultTable = (rows: ReadonlyArray<Row>): string =>
  formatTable(
    ["scenario", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "non-2xx", "errors"],
    rows.map((r) => [
      r.name,
      count(Math.round(r.rps)),
      ...r.percentiles.map((ms) => ms.toFixed(2)),
      String(r.non2xx),
      String(r.errors)
    ])
  )

export interface BenchOptions {
  readonly rows: Option.Option<number>
  readonly only: ReadonlySet<ScenarioKey>
  readonly duration: number
  readonly connections: number
  /** An existing database to use (and keep), else a throwaway one. */
  readonly databaseUrl: Option.Option<string>
  readonly redisUrl: string
}

export const runBench = (options: BenchOptions): Effect.Effect<void, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const { connections, duration, only } = options
    const rows = Option.getOrElse(options.rows, () => 0)
    // Released in the reverse order: the servers stop, then the Redis keys go, then the database.
    const databaseUrl = yield* Option.match(options.databaseUrl, {
      onNone: () => throwawayDatabase(progress),
      onSome: (url) =>
        checkReachable(url, "Start it, or point --database-url (BENCH_DATABASE_URL) at a database to use.").pipe(
          Effect.as(url)
        )
    })
    const cache = yield* benchCache(options.redisUrl, progress)
    progress(`starting the server (database ${databaseName(databaseUrl)}, ${cache.description})`)
    const { base } = yield* serverProcess({ env: serverEnv(databaseUrl, cache.env), log: progress })
    progress(`the server is ready on ${base}`)
    const auth = yield* benchKey(databaseUrl)
    if (only.has("post-schema")) yield* attempt(() => registerOrderSchema(base, auth))
    if (only.has("post-indexed")) yield* attempt(() => declareOrderIndexes(base, auth))

    // The second server starts once the first has migrated the database.
    let uncachedBase = ""
    if (only.has("get-uncached")) {
      progress("starting the server without a cache (CACHE_MAX_ENTRIES=1, RECORD_CACHE_BYTES=0, no Redis)")
      const uncached = yield* serverProcess({
        env: serverEnv(databaseUrl, {
          REDIS_URL: undefined,
          REDIS_CLUSTER_NODES: undefined,
          CACHE_MAX_ENTRIES: "1",
          RECORD_CACHE_BYTES: "0"
        }),
        log: progress
      })
      uncachedBase = uncached.base
      progress(`the server without a cache is ready on ${uncachedBase}`)
    }

    const ids: Array<string> = []
    if (rows > 0) {
      progress(`seeding ${count(rows)} rows`)
      const seeded = yield* attempt(() => seed({ databaseUrl, rows, sampleIds: PRECREATE }))
      progress(describeSeed(seeded))
      ids.push(...seeded.sampleIds)
    }
    const empty = (yield* query(databaseUrl, "SELECT NOT EXISTS (SELECT 1 FROM records)")) === "t"
    let precreated: Array<string> = []
    if (only.has("get-cached") || only.has("mix") || empty) {
      progress(`writing ${count(PRECREATE)} records through the API`)
      precreated = yield* attempt((signal) => precreate(base, auth, signal))
      ids.push(...precreated)
    } else progress("writing no records through the API: no selected scenario needs them")
    const total = yield* query(databaseUrl, "SELECT count(*) FROM records")
    const postgres = yield* query(databaseUrl, "SHOW server_version")

    // The in-process cache keeps the newest CACHE_MAX_ENTRIES records: read only ids it can hold.
    const capacity = cache.redis !== undefined ? Infinity : yield* attempt(async () => {
      const text = process.env.CACHE_MAX_ENTRIES
      return text === undefined || text === "" ? 10_000 : parseCount("CACHE_MAX_ENTRIES", text)
    })
    const cachedIds = precreated.slice(-Math.min(precreated.length, capacity))
    let spreadIds: Array<string> = []
    if (only.has("get-uncached")) {
      progress(`sampling ${count(SPREAD_IDS)} ids over the whole table`)
      spreadIds = yield* attempt(() => sampleSpreadIds(databaseUrl, SPREAD_IDS))
      if (spreadIds.length === 0) return yield* new BenchError({ message: "the table is empty: no ids to read" })
    }

    const notes: Array<string> = []
    const results: Array<Row> = []
    for (const scenario of scenarios(auth, ids, cachedIds, spreadIds).filter((s) => only.has(s.key))) {
      const target = scenario.uncachedServer === true ? uncachedBase : base
      if (scenario.key === "get-cached") {
        const waited = yield* attempt(() => waitCacheUp(base))
        const health = waited === undefined
          ? `still not up after ${CACHE_UP_TIMEOUT_MS / 1000} s`
          : waited >= 1
          ? `up after waiting ${waited.toFixed(1)} s (circuit breaker open)`
          : "up"
        progress(`cache health: ${health}`)
        notes.push(`${scenario.name}: cache health on /health/ready before measuring: ${health}`)
        const checked = sample(cachedIds, CHECK_SAMPLE)
        if (cache.redis !== undefined) {
          const present = yield* countRecordKeys(cache.redis, TENANT, checked)
          const line = `${count(present)}/${
            count(checked.length)
          } of a sample of the ids were keys in Redis before any read`
          progress(line)
          notes.push(`${scenario.name}: ${line} (written on insert)`)
        }
        const before = yield* attempt((signal) => readAll(base, auth, checked, signal))
        progress(`cache check on ${count(before.total)} of the cached ids: ${ratio(before)}`)
        let check = `sample of ${count(before.total)} read just before measuring: ${ratio(before)}`
        if (before.hits < 0.99 * before.total) {
          progress(`reading all ${count(cachedIds.length)} cached ids once to fill the cache`)
          yield* attempt((signal) => readAll(base, auth, cachedIds, signal))
          const after = yield* attempt((signal) => readAll(base, auth, sample(cachedIds, CHECK_SAMPLE), signal))
          progress(`cache check after filling: ${ratio(after)}`)
          check += `; after reading every id once: ${ratio(after)}`
        }
        notes.push(`${scenario.name}: Cache-Status on a ${check}`)
      }
      if (scenario.key === "get-uncached") {
        // Also warms the second server up, as the earlier scenarios did the first.
        const before = yield* attempt((signal) => readAll(uncachedBase, auth, sample(spreadIds, CHECK_SAMPLE), signal))
        progress(`uncached server check on ${count(before.total)} ids: ${ratio(before)}`)
        notes.push(`${scenario.name}: Cache-Status on a sample of ${count(before.total)} read before: ${ratio(before)}`)
      }
      progress(`${scenario.name}: ${duration} s, ${connections} connections`)
      results.push(yield* attempt((signal) => measure(target, auth, scenario, connections, duration, signal)))
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
        resultTable(results),
        ...results.flatMap((r) =>
          r.recordsPerSecond !== undefined ? [`${r.name}: ${count(Math.round(r.recordsPerSecond))} records/s`] : []
        ),
        ...notes,
        ...results.flatMap((r) =>
          r.cacheHits !== undefined ? [`${r.name}: Cache-Status while measuring: ${ratio(r.cacheHits)} of 2xx`] : []
        )
      ].join("\n")
    )
  }))
