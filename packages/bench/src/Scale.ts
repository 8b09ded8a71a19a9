/**
 * `bench scale`: how the HTTP API holds up as `records` grows, in rows and in
 * partitions, on a PostgreSQL cluster of its own (ScaleCluster.ts).
 *
 * Two series, each point measured the same way:
 * - rows (--rows, default 1e6,1e7): one database partitioned by --interval
 *   (default month over 15 months, the server's default), grown in steps
 *   (1M, then 9M more in the same range, …; never reloaded from zero);
 * - partitions (--partitions, default 15,366,1000): --partition-rows rows
 *   (default 1e6) in a database of its own per point: 15 months, 366 days, 1000 days.
 * Rows go in with COPY (ScaleLoad.ts). At each point two servers start on the
 * database (the workspace's, or --server-main's): one with the Redis cache under
 * a key prefix of the run, one without any cache (CACHE_MAX_ENTRIES=1,
 * RECORD_CACHE_BYTES=0, no Redis), each with the defaults but PARTITION_INTERVAL
 * (the database's) and SHUTDOWN_DELAY=0s (it only slows their stop). Then a
 * probe of a read by id (EXPLAIN ANALYZE, ScaleStats.ts), and the scenarios
 * (--only), each once the database is quiet (requests that timed out in the one
 * before still run there) and after a 1 s warm-up, with pg_stat_statements reset
 * before it and pg_stat_activity sampled during it:
 *   get-hot      GET /data/{id}, cached server, ids read once before (Cache-Status checked)
 *   get-recent   GET /data/{id}, uncached, Zipf (s = 1) over ids of the newest 2 % of the range, newest first
 *   get-uniform  GET /data/{id}, uncached, ids sampled uniformly over the whole table
 *   range-first  GET /data?stream=orders&limit=100 (newest first), uncached
 *   range-key    GET /data?stream=orders&key=…&limit=100, the keys in turn, uncached
 *   range-deep   GET /data?stream=orders&to=…&limit=100&cursor=…: the second page below a time in the
 *                middle of the range, 8 such cursors in turn, uncached
 *   range-asc    GET /data?stream=orders&order=asc&limit=100, uncached
 *   post         POST /data of an order to stream orders, cached server; its rows are deleted after it
 *
 * The report goes to stdout as each point is measured, with a summary against the
 * first point of each series at the end; --json FILE writes the results too (after
 * each point). The cluster, the servers and the Redis keys are scoped: released
 * however the run ends (the cluster's directory kept with --keep or --reuse).
 */
import { partitionFor, serverMain } from "@strata/server"
import type autocannon from "autocannon"
import { Effect, Option } from "effect"
import { existsSync, writeFileSync } from "node:fs"
import { availableParallelism, cpus, totalmem } from "node:os"
import { dirname, join, resolve } from "node:path"
import { DEFAULT_REDIS_URL } from "./Bench.ts"
import { attempt, BenchError } from "./BenchError.ts"
import { clusterCpuMs, processCpuMs } from "./CpuUsage.ts"
import { type Auth, count, type Load, measure, pick, ratio, readAll, sample } from "./Measure.ts"
import { psql, psqlSession } from "./Postgres.ts"
import { benchCache, type CacheSetup } from "./Redis.ts"
import { type Cluster, ensureDatabase, scaleCluster } from "./ScaleCluster.ts"
import {
  type DatabaseState,
  growTo,
  type LoadStep,
  newDatabase,
  orderData,
  RECENT_FRACTION,
  type Span,
  spanLabel,
  tableSize
} from "./ScaleLoad.ts"
import { describeSize, describeSummary, type ScenarioResult, shortCount, type SizeResult } from "./ScaleReport.ts"
import { probeReadById, resetStatements, sampleWaits, settle, statementTotals, topStatements } from "./ScaleStats.ts"
import { KEYS_PER_STREAM, STREAMS, TENANT } from "./Seed.ts"
import { benchKey, serverEnv, serverProcess, strataCli } from "./Server.ts"

export const SCALE_SCENARIO_KEYS = [
  "get-hot",
  "get-recent",
  "get-uniform",
  "range-first",
  "range-key",
  "range-deep",
  "range-asc",
  "post"
] as const
export type ScaleScenarioKey = (typeof SCALE_SCENARIO_KEYS)[number]

export interface ScaleOptions {
  /** The row series, ascending; empty: none. */
  readonly rows: ReadonlyArray<number>
  readonly interval: Span
  /** The partition series; empty: none. */
  readonly partitions: ReadonlyArray<Span>
  readonly partitionRows: number
  readonly duration: number
  readonly connections: number
  readonly only: ReadonlySet<ScaleScenarioKey>
  readonly serverMain: Option.Option<string>
  readonly json: Option.Option<string>
  readonly dir: string
  readonly reuse: Option.Option<string>
  readonly keep: boolean
  readonly port: number
  readonly sharedBuffers: string
  readonly effectiveCacheSize: string
}

const log = (message: string) => console.error(`bench:scale: ${message}`)

const WARMUP_SECONDS = 1
/** Ids read through the cached server before get-hot, so they are in its cache. */
const HOT_IDS = 10_000
const CHECK_SAMPLE = 1_000
const PROBE_IDS = 10
const DEEP_CURSORS = 8
const PAGE = 100
/** How long the outbox may take to drain after post, before its rows are deleted anyway. */
const OUTBOX_DRAIN_MS = 60_000

/** The time prefix of a UUIDv7 in milliseconds: the row's occurred_at (as the server's recordIdTime). */
const idTime = (id: string) => Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16)

/** Ranks 0…n-1 drawn with probability proportional to 1 / (rank + 1)^s. */
const zipf = (n: number, s: number): () => number => {
  const cdf = new Float64Array(n)
  let total = 0
  for (let i = 0; i < n; i++) cdf[i] = total += 1 / (i + 1) ** s
  return () => {
    const u = Math.random() * total
    let lo = 0
    let hi = n - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (cdf[mid] < u) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

/** The items in turn, from the first again after the last. */
const rotating = <A>(items: ReadonlyArray<A>): () => A => {
  let i = 0
  return () => items[i++ % items.length]
}

interface Scenario extends Load {
  readonly key: ScaleScenarioKey
  readonly server: "cached" | "uncached"
}

interface Inputs {
  readonly auth: Auth
  readonly hotIds: ReadonlyArray<string>
  /** Newest first: Zipf rank 0 is the newest. */
  readonly recentIds: ReadonlyArray<string>
  readonly uniformIds: ReadonlyArray<string>
  readonly deepPaths: ReadonlyArray<string>
}

const scenarios = (inputs: Inputs): Array<Scenario> => {
  const json = { ...inputs.auth, "content-type": "application/json" }
  const get = (path: () => string) => (request: autocannon.Request): autocannon.Request => ({
    ...request,
    method: "GET",
    path: path(),
    body: ""
  })
  const recentRank = zipf(Math.max(1, inputs.recentIds.length), 1)
  const keys = sample(Array.from({ length: KEYS_PER_STREAM }, (_, i) => `orders-${i}`), KEYS_PER_STREAM)
  const nextKey = rotating(keys)
  const nextDeep = rotating(inputs.deepPaths)
  // Bodies are made up front so the load generator spends its CPU on sending, not on JSON.
  const bodies = Array.from(
    { length: 1_000 },
    () => `{"stream":"orders","key":"orders-${Math.floor(Math.random() * KEYS_PER_STREAM)}","data":${orderData()}}`
  )
  return [
    {
      key: "get-hot",
      name: "GET /data/{id} cached",
      server: "cached",
      request: { setupRequest: get(() => `/data/${pick(inputs.hotIds)}`) },
      countCacheStatus: true
    },
    {
      key: "get-recent",
      name: "GET /data/{id} recent, Zipf",
      server: "uncached",
      request: { setupRequest: get(() => `/data/${inputs.recentIds[recentRank()]}`) },
      countCacheStatus: true
    },
    {
      key: "get-uniform",
      name: "GET /data/{id} uniform",
      server: "uncached",
      request: { setupRequest: get(() => `/data/${pick(inputs.uniformIds)}`) },
      countCacheStatus: true
    },
    {
      key: "range-first",
      name: "GET /data?stream first page",
      server: "uncached",
      request: { setupRequest: get(() => `/data?stream=orders&limit=${PAGE}`) }
    },
    {
      key: "range-key",
      name: "GET /data?stream&key first page",
      server: "uncached",
      request: { setupRequest: get(() => `/data?stream=orders&key=${nextKey()}&limit=${PAGE}`) }
    },
    {
      key: "range-deep",
      name: "GET /data?stream&to&cursor",
      server: "uncached",
      request: { setupRequest: get(nextDeep) }
    },
    {
      key: "range-asc",
      name: "GET /data?stream&order=asc",
      server: "uncached",
      request: { setupRequest: get(() => `/data?stream=orders&order=asc&limit=${PAGE}`) }
    },
    {
      key: "post",
      name: "POST /data",
      server: "cached",
      request: {
        setupRequest: (request) => ({ ...request, method: "POST", path: "/data", headers: json, body: pick(bodies) })
      }
    }
  ]
}

/**
 * Paths of the second page below DEEP_CURSORS times spread over the middle of the
 * range: `to` there, and the first page's nextCursor (whose scope is stream and
 * order; `to` is repeated, as a client paging on would).
 */
const deepPaths = async (base: string, auth: Auth, db: DatabaseState, signal: AbortSignal) => {
  const paths: Array<string> = []
  for (let k = 0; k < DEEP_CURSORS; k++) {
    const at = new Date(db.fromMs + (db.toMs - db.fromMs) * (0.3 + 0.4 * k / Math.max(1, DEEP_CURSORS - 1)))
    const query = `stream=orders&to=${encodeURIComponent(at.toISOString())}&limit=${PAGE}`
    const res = await fetch(`${base}/data?${query}`, { headers: auth, signal })
    const body = await res.text()
    if (res.status !== 200) throw new Error(`GET /data?${query} answered ${res.status}: ${body.slice(0, 200)}`)
    const cursor = (JSON.parse(body) as { nextCursor: string | null }).nextCursor
    if (cursor === null) {
      throw new Error(`GET /data?${query} gave no nextCursor: too few rows below ${at.toISOString()}`)
    }
    const path = `/data?${query}&cursor=${encodeURIComponent(cursor)}`
    const second = await fetch(`${base}${path}`, { headers: auth, signal })
    await second.arrayBuffer()
    if (second.status !== 200) throw new Error(`GET ${path} answered ${second.status}`)
    paths.push(path)
  }
  return paths
}

/** Waits until the outbox is empty (the servers relay and delete its rows), at most OUTBOX_DRAIN_MS. */
const drainOutbox = async (databaseUrl: string, signal: AbortSignal): Promise<number> => {
  const deadline = Date.now() + OUTBOX_DRAIN_MS
  for (;;) {
    const left = Number(await psql(databaseUrl, "SELECT count(*) FROM outbox"))
    if (left === 0 || Date.now() > deadline || signal.aborted) return left
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
}

/** What every point of a run shares. */
interface Run {
  readonly options: ScaleOptions
  readonly cluster: Cluster
  readonly cache: CacheSetup
  readonly main: string
  readonly cli: string
  readonly waits: { readonly run: (sql: string) => Promise<string> }
}

/** Measures one point: the servers, the probe, the scenarios; answers its block of the report. */
const measurePoint = (
  run: Run,
  db: DatabaseState,
  point: {
    readonly series: SizeResult["series"]
    readonly label: string
    readonly load: LoadStep
    /** performance.now() when the point began, its load included. */
    readonly started: number
  }
): Effect.Effect<SizeResult, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const { cache, cluster, options } = run
    const { connections, duration, only } = options
    const url = cluster.urlOf(db.name)
    const selected = (key: ScaleScenarioKey) => only.has(key)
    const env = (overrides: Record<string, string | undefined>) =>
      serverEnv(url, { PARTITION_INTERVAL: db.span.interval, SHUTDOWN_DELAY: "0s", ...overrides })
    const bases: { cached?: string; uncached?: string } = {}
    const pids: { cached?: () => number | undefined; uncached?: () => number | undefined } = {}
    if (selected("get-hot") || selected("post")) {
      log(`${point.label}: starting the server with the cache (${cache.description})`)
      const server = yield* serverProcess({ env: env(cache.env), main: run.main, log })
      bases.cached = server.base
      pids.cached = server.pid
    }
    if (SCALE_SCENARIO_KEYS.some((k) => selected(k) && k !== "get-hot" && k !== "post")) {
      log(`${point.label}: starting the server without a cache`)
      const server = yield* serverProcess({
        env: env({
          REDIS_URL: undefined,
          REDIS_CLUSTER_NODES: undefined,
          CACHE_MAX_ENTRIES: "1",
          RECORD_CACHE_BYTES: "0"
        }),
        main: run.main,
        log
      })
      bases.uncached = server.base
      pids.uncached = server.pid
    }
    const auth = yield* benchKey(url, run.cli)

    // After the servers started: they made the partitions ahead of need, which a generic plan covers too.
    const size = yield* attempt(() => tableSize(url))
    log(`${point.label}: probing a read by id (EXPLAIN ANALYZE)`)
    const probe = yield* attempt(() =>
      probeReadById(
        url,
        TENANT,
        sample(db.uniform.items, PROBE_IDS).map((id) => [id, new Date(idTime(id)).toISOString()] as const)
      )
    )

    const notes: Array<string> = []
    const hotIds = sample(db.uniform.items, HOT_IDS)
    const hot = new Set(hotIds)
    const spread = db.uniform.items.filter((id) => !hot.has(id))
    const uniformIds = spread.length > 0 ? spread : db.uniform.items
    // UUIDv7 text sorts by time: descending is newest first.
    const recentIds = db.recent.items.toSorted().toReversed()
    const deep = selected("range-deep") && bases.uncached !== undefined
      ? yield* attempt((signal) => deepPaths(bases.uncached!, auth, db, signal))
      : []
    const list = scenarios({ auth, hotIds, recentIds, uniformIds, deepPaths: deep }).filter((s) => selected(s.key))
    if (selected("get-recent")) {
      notes.push(
        `get-recent: Zipf (s = 1) over ${count(recentIds.length)} ids sampled from the newest ${
          100 * RECENT_FRACTION
        } % of the range (from ${new Date(db.toMs - RECENT_FRACTION * (db.toMs - db.fromMs)).toISOString()})`
      )
    }
    const age = (Date.now() - db.toMs) / 86_400_000
    if (age >= 1) {
      notes.push(
        `the rows end ${age.toFixed(0)} days before this run (loaded by an earlier one): ` +
          "the newest loaded partition may no longer be the current one"
      )
    }
    if (selected("get-uniform")) {
      notes.push(`get-uniform: ${count(uniformIds.length)} ids sampled uniformly over all ${count(db.rows)} rows`)
    }

    const results: Array<ScenarioResult> = []
    let postFrom: Date | undefined
    for (const scenario of list) {
      const base = scenario.server === "cached" ? bases.cached! : bases.uncached!
      if (scenario.key === "get-hot") {
        log(`${point.label}: reading ${count(hotIds.length)} ids once through the cached server`)
        const first = yield* attempt((signal) => readAll(base, auth, hotIds, signal))
        const check = yield* attempt((signal) => readAll(base, auth, sample(hotIds, CHECK_SAMPLE), signal))
        log(`${point.label}: cache check: ${ratio(check)}`)
        notes.push(
          `get-hot: ${count(hotIds.length)} ids read once before measuring (${ratio(first)}), ` +
            `then a sample of ${count(check.total)} again: ${ratio(check)}` +
            (check.hits < 0.99 * check.total ? "; under 99 %: not every id was served from the cache" : "")
        )
      }
      if (scenario.key === "post") postFrom = new Date()
      log(
        `${point.label}: ${scenario.key}: ${WARMUP_SECONDS} s warm-up, then ${duration} s, ${connections} connections`
      )
      yield* attempt((signal) => measure(base, auth, scenario, connections, WARMUP_SECONDS, signal))
      // Requests the client gave up on (this warm-up's, a slow scenario's before) still run in the database.
      const waited = yield* attempt((signal) => settle(run.waits.run, db.name, signal))
      if (waited === undefined) {
        notes.push(`${scenario.key}: the database was still busy with earlier requests after 60 s; measured anyway`)
      } else if (waited >= 1) {
        notes.push(`${scenario.key}: waited ${waited.toFixed(0)} s before measuring, until earlier requests had left`)
      }
      yield* attempt(() => resetStatements(url))
      // CPU per request shows what a change costs where this shared machine's noise moves req/s.
      const serverPid = pids[scenario.server]?.()
      const cpu = () => ({
        server: serverPid === undefined ? undefined : processCpuMs(serverPid),
        database: clusterCpuMs(join(cluster.dir, "data"))
      })
      const { cpuBefore, cpuAfter, row, waits } = yield* attempt(async (signal) => {
        const stop = new AbortController()
        const sampling = sampleWaits(run.waits.run, db.name, AbortSignal.any([signal, stop.signal]))
        sampling.catch(() => {}) // awaited below; a failure meanwhile is not unhandled
        try {
          const cpuBefore = cpu()
          const row = await measure(base, auth, scenario, connections, duration, signal)
          const cpuAfter = cpu()
          stop.abort()
          return { cpuBefore, cpuAfter, row, waits: await sampling }
        } finally {
          stop.abort()
        }
      })
      const requests = row.rps * duration
      const perRequest = (from: number | undefined, to: number | undefined) =>
        from === undefined || to === undefined || requests <= 0 ? undefined : (to - from) / requests
      const statements = yield* attempt(() => topStatements(url))
      const totals = yield* attempt(() => statementTotals(url))
      results.push({
        key: scenario.key,
        name: scenario.name,
        server: scenario.server,
        rps: row.rps,
        p50Ms: row.percentiles[0],
        p99Ms: row.percentiles[2],
        non2xx: row.non2xx,
        errors: row.errors,
        serverCpuMs: perRequest(cpuBefore.server, cpuAfter.server),
        databaseCpuMs: perRequest(cpuBefore.database, cpuAfter.database),
        ...(row.cacheHits !== undefined ? { cacheHits: row.cacheHits } : {}),
        statements,
        statementTotals: totals,
        waits
      })
      log(
        `${point.label}: ${scenario.key}: ${count(Math.round(row.rps))} req/s, p99 ${
          row.percentiles[2].toFixed(2)
        } ms` +
          (row.non2xx + row.errors > 0 ? `, ${row.non2xx} non-2xx, ${row.errors} errors` : "")
      )
    }

    if (postFrom !== undefined) {
      // The loaded rows all precede postFrom; the posted ones (occurredAt: now) follow it.
      const from = postFrom
      const { deleted, left } = yield* attempt(async (signal) => {
        const left = await drainOutbox(url, signal)
        const deleted = await psql(
          url,
          `WITH gone AS (DELETE FROM records WHERE tenant_id = '${TENANT}' AND stream = 'orders'
                           AND occurred_at >= '${from.toISOString()}' RETURNING 1)
           SELECT count(*) FROM gone`
        )
        const touched = new Set([from.getTime(), Date.now()].map((ms) => partitionFor(db.span.interval, ms).name))
        await psql(url, `VACUUM (ANALYZE) ${[...touched].join(", ")}`)
        return { deleted: Number(deleted), left }
      })
      notes.push(
        `post: its ${
          count(deleted)
        } rows (warm-up included) deleted after it, so the table holds the loaded rows only` +
          (left > 0 ? `; ${count(left)} outbox rows were still there after ${OUTBOX_DRAIN_MS / 1000} s` : "")
      )
    }
    const elapsed = (performance.now() - point.started) / 1000
    notes.push(
      `this point took ${elapsed.toFixed(0)} s: load ${
        (point.load.seconds + point.load.vacuumSeconds).toFixed(0)
      } s, ` +
        `servers and scenarios ${(elapsed - point.load.seconds - point.load.vacuumSeconds).toFixed(0)} s`
    )
    return {
      series: point.series,
      label: point.label,
      database: db.name,
      rows: db.rows,
      span: db.span,
      from: new Date(db.fromMs).toISOString(),
      to: new Date(db.toMs).toISOString(),
      load: point.load,
      size,
      probe,
      scenarios: results,
      notes,
      elapsedSeconds: elapsed
    }
  }))

/** The database of a series point, made and migrated when new; answers its state. */
const openDatabase = (run: Run, name: string, span: Span): Effect.Effect<DatabaseState, BenchError> =>
  Effect.gen(function*() {
    const { cluster } = run
    const url = cluster.urlOf(name)
    const made = yield* ensureDatabase(cluster, name)
    const known = cluster.state.databases[name]
    if (!made && known?.loading === true) {
      return yield* new BenchError({
        message: `database ${name} of ${cluster.dir}: an earlier run stopped while loading it, ` +
          "so its rows are unknown: run without --reuse"
      })
    }
    // Every time: a newer server may bring migrations (it would also run them when it starts).
    yield* strataCli(["migrate"], { DATABASE_URL: url, LOG_LEVEL: "Warn" }, run.cli)
    if (known !== undefined && !made) return known
    const db = yield* attempt(() => newDatabase(url, name, span))
    cluster.state.databases[name] = db
    cluster.save()
    return db
  })

const databaseName = (series: "rows" | "parts", span: Span) => `scale_${series}_${span.interval}${span.partitions}`

const machine = () =>
  `${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? "unknown cpu"}), ` +
  `${Math.round(totalmem() / 2 ** 30)} GiB RAM, ${process.platform}/${process.arch}, node ${process.version}`

export const runScale = (options: ScaleOptions): Effect.Effect<void, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const main = Option.match(options.serverMain, { onNone: () => serverMain, onSome: (path) => resolve(path) })
    const cli = join(dirname(main), "cli", "main.ts")
    if (!existsSync(main) || !existsSync(cli)) {
      return yield* new BenchError({
        message: `--server-main ${main}: expected a packages/server/src/main.ts with cli/main.ts beside it`
      })
    }
    const rowTargets = [...options.rows].toSorted((a, b) => a - b)
    const plan = [
      ...(rowTargets.length > 0 ? [{ name: databaseName("rows", options.interval), rows: rowTargets.at(-1)! }] : []),
      ...options.partitions.map((span) => ({ name: databaseName("parts", span), rows: options.partitionRows }))
    ]
    const cluster = yield* scaleCluster({
      parent: options.dir,
      reuse: Option.getOrUndefined(options.reuse),
      keep: options.keep,
      port: options.port,
      sharedBuffers: options.sharedBuffers,
      effectiveCacheSize: options.effectiveCacheSize,
      rowsToLoad: (state) => plan.reduce((n, p) => n + Math.max(0, p.rows - (state.databases[p.name]?.rows ?? 0)), 0),
      log
    })
    const cache = yield* benchCache(DEFAULT_REDIS_URL, log)
    const waits = yield* psqlSession(cluster.urlOf("postgres"))
    const run: Run = { options, cluster, cache, main, cli, waits }

    const workspace = main === serverMain
    console.log([
      "bench scale: the HTTP API as records grows in rows and in partitions",
      `machine: ${machine()}`,
      `PostgreSQL ${cluster.version}, a cluster of its own in ${cluster.dir} on 127.0.0.1:${cluster.port}` +
      (cluster.reused ? " (reused: kept by an earlier --keep run)" : ""),
      `settings: ${cluster.settings.map(([name, value]) => `${name} = ${value}`).join(", ")}`,
      `server: ${main}${workspace ? " (this workspace's)" : " (another checkout's, --server-main)"}`,
      `servers: "cached": ${cache.description}; "uncached": CACHE_MAX_ENTRIES=1, RECORD_CACHE_BYTES=0, no Redis. ` +
      "Both: PARTITION_INTERVAL of the database, SHUTDOWN_DELAY=0s, DATABASE_POOL_MAX " +
      `${process.env.DATABASE_POOL_MAX ?? "10 (default)"}, else the defaults`,
      `load: autocannon, ${options.connections} connections, ${WARMUP_SECONDS} s warm-up then ${options.duration} s ` +
      "per scenario; latency percentiles over 2xx; load generator, servers, PostgreSQL and Redis share this machine",
      `data: tenant ${TENANT}, streams ${STREAMS.join(", ")} in turn, ${count(KEYS_PER_STREAM)} keys each, ` +
      "orders of about 300 bytes of JSON; COPY into records (the parent), in time order per COPY stream, " +
      "uniform over the range, which ends at the first load; then VACUUM (ANALYZE) records",
      "outbox: the loaded rows have no outbox rows (as if relayed long ago)",
      ""
    ].join("\n"))

    const results: { rows: Array<SizeResult>; partitions: Array<SizeResult> } = { rows: [], partitions: [] }
    const save = () =>
      Option.match(options.json, {
        onNone: () => {},
        onSome: (file) =>
          writeFileSync(
            file,
            JSON.stringify(
              {
                machine: machine(),
                postgres: { version: cluster.version, settings: Object.fromEntries(cluster.settings) },
                server: main,
                options: {
                  ...options,
                  only: [...options.only],
                  serverMain: main,
                  json: Option.getOrNull(options.json),
                  reuse: Option.getOrNull(options.reuse)
                },
                ...results
              },
              null,
              2
            )
          )
      })
    const measured = (r: SizeResult) =>
      Effect.sync(() => {
        results[r.series].push(r)
        console.log(`${describeSize(r)}\n`)
        save()
      })

    if (rowTargets.length > 0) {
      const db = yield* openDatabase(run, databaseName("rows", options.interval), options.interval)
      for (const rows of rowTargets) {
        const label = `${shortCount(rows)} rows`
        if (db.rows > rows) {
          log(`${label}: skipped, the reused database already holds ${count(db.rows)} rows`)
          continue
        }
        const started = performance.now()
        log(
          db.rows === rows
            ? `${label}: nothing to load, ${db.name} holds them from an earlier run`
            : `${label}: loading ${count(rows - db.rows)} rows into ${db.name} (${spanLabel(db.span)})`
        )
        const load = yield* attempt((signal) => growTo(cluster.urlOf(db.name), db, rows, cluster.save, signal))
        yield* measured(yield* measurePoint(run, db, { series: "rows", label, load, started }))
      }
    }
    for (const span of options.partitions) {
      const label = spanLabel(span)
      const db = yield* openDatabase(run, databaseName("parts", span), span)
      if (db.rows > options.partitionRows) {
        log(`${label}: skipped, the reused database already holds ${count(db.rows)} rows`)
        continue
      }
      const started = performance.now()
      log(
        db.rows === options.partitionRows
          ? `${label}: nothing to load, ${db.name} holds them from an earlier run`
          : `${label}: loading ${count(options.partitionRows - db.rows)} rows into ${db.name}`
      )
      const load = yield* attempt((signal) =>
        growTo(cluster.urlOf(db.name), db, options.partitionRows, cluster.save, signal)
      )
      yield* measured(yield* measurePoint(run, db, { series: "partitions", label, load, started }))
    }

    console.log(
      [
        describeSummary("rows", results.rows),
        describeSummary(`partitions, ${count(options.partitionRows)} rows each`, results.partitions)
      ].filter((s) => s !== "").join("\n\n")
    )
    Option.match(options.json, { onNone: () => {}, onSome: (file) => log(`wrote ${file}`) })
  }))
