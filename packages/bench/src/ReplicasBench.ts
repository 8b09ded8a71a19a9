/**
 * `pnpm bench replicas` (issue #30): what a read replica takes off the primary.
 *
 * A PostgreSQL 15 primary and a streaming replica of their own
 * (startReplicatedPostgres from @strata/testing, with shared_buffers large
 * enough for the loaded rows), `--rows` orders COPYed into `records` through
 * the server's schema (migrated by the CLI; ScaleLoad.ts's growTo: 15 monthly
 * partitions, the newest the current one, then VACUUM (ANALYZE)), the replica
 * caught up, and both nodes' `records` partitions and indexes read into their
 * shared buffers (pg_prewarm), as a deployment's would be.
 *
 * Then `--rounds` rounds of two configurations, A then B, each a fresh server
 * process stopped after its scenarios:
 *   A  DATABASE_URL = the primary
 *   B  DATABASE_URL = the primary, DATABASE_READ_URL = the replica
 * both without any cache (CACHE_MAX_ENTRIES=1, RECORD_CACHE_BYTES=0, no Redis)
 * so every read reaches PostgreSQL, SHUTDOWN_DELAY=0s (it only slows their
 * stop), and the server's defaults otherwise (LOG_LEVEL=Info and the access log,
 * into a file). Two scenarios each, autocannon, a 1 s warm-up then `--duration` s:
 *   get-by-id   GET /data/{id}, ids drawn uniformly from (a sample of) the loaded ones
 *   range-page  GET /data?stream=…&limit=100, the streams holding more than 100 records
 *               in turn: full pages, which a replica may answer (only a last page
 *               is confirmed on the primary)
 * Per run: req/s, P99, CPU ms per request of the server and of each PostgreSQL
 * cluster (/proc: the postmaster and its children), and the share of reads the
 * replica answered (`strata_db_reads_total` on /metrics, its increase over the
 * run). A markdown table of every run, then the medians over rounds.
 *
 * Everything (servers, both clusters, the log directory) is scoped: removed
 * however the run ends, Ctrl-C included.
 */
import { parsePrometheusText, type ReplicatedPostgres, startReplicatedPostgres } from "@strata/testing"
import type autocannon from "autocannon"
import { Effect } from "effect"
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs"
import { availableParallelism, cpus, tmpdir, totalmem } from "node:os"
import { join } from "node:path"
import { attempt, BenchError } from "./BenchError.ts"
import { clusterCpuMs, processCpuMs } from "./CpuUsage.ts"
import { type Auth, count, type Load, measure, pick } from "./Measure.ts"
import { psql } from "./Postgres.ts"
import { growTo, newDatabase, type Span } from "./ScaleLoad.ts"
import { benchKey, type Environment, serverProcess, strataCli } from "./Server.ts"

export interface ReplicasBenchOptions {
  readonly rows: number
  readonly rounds: number
  readonly duration: number
  readonly connections: number
}

const log = (message: string) => console.error(`bench:replicas: ${message}`)

const WARMUP_SECONDS = 1
const PAGE = 100
/** The server's default partitioning: 15 months, the newest the current one (as `bench scale`). */
const SPAN: Span = { interval: "month", partitions: 15 }
/** Over the helper's test settings (fsync off…): room for 200,000 rows and their indexes in each node's buffers. */
const PG_SETTINGS = ["shared_buffers = 256MB", "effective_cache_size = 1GB", "work_mem = 4MB"]
/** How long a configuration B server may take to put the replica in rotation. */
const ROTATION_TIMEOUT_MS = 15_000

type ConfigKey = "A" | "B"
const CONFIGS: ReadonlyArray<{ readonly key: ConfigKey; readonly label: string }> = [
  { key: "A", label: "A primary only" },
  { key: "B", label: "B primary + replica" }
]
type ScenarioKey = "get-by-id" | "range-page"

interface RunResult {
  readonly round: number
  readonly config: ConfigKey
  readonly scenario: ScenarioKey
  readonly rps: number
  readonly p99Ms: number
  readonly non2xx: number
  readonly errors: number
  readonly serverMs: number | undefined
  readonly primaryMs: number | undefined
  readonly replicaMs: number | undefined
  /** Reads counted by strata_db_reads_total during the run, and those the replica answered. */
  readonly reads: number
  readonly replicaReads: number
}

/** strata_db_reads_total now, by node. */
const readCounts = async (base: string, signal: AbortSignal) => {
  const text = await (await fetch(`${base}/metrics`, { signal: AbortSignal.any([signal, AbortSignal.timeout(5_000)]) }))
    .text()
  const metrics = parsePrometheusText(text)
  const all = metrics.find("strata_db_reads_total")
  const primary = metrics.sum("strata_db_reads_total", { node: "primary" })
  const total = all.reduce((n, s) => n + s.value, 0)
  return { total, replica: total - primary }
}

/** Until the server reports the replica in rotation (strata_replica_in_rotation 1). */
const inRotation = async (base: string, signal: AbortSignal) => {
  const deadline = Date.now() + ROTATION_TIMEOUT_MS
  for (;;) {
    const text = await (await fetch(`${base}/metrics`, { signal })).text()
    if (parsePrometheusText(text).sum("strata_replica_in_rotation") >= 1) return
    if (Date.now() > deadline) {
      throw new Error(`the server did not put the replica in rotation within ${ROTATION_TIMEOUT_MS / 1000} s`)
    }
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

/** A full first page of each stream, checked once before measuring: 100 records and a next cursor. */
const checkPages = async (base: string, auth: Auth, paths: ReadonlyArray<string>, signal: AbortSignal) => {
  for (const path of paths) {
    const res = await fetch(`${base}${path}`, { headers: auth, signal })
    const body = await res.text()
    if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status}: ${body.slice(0, 200)}`)
    const page = JSON.parse(body) as { records: Array<unknown>; nextCursor: string | null }
    if (page.records.length !== PAGE || page.nextCursor === null) {
      throw new Error(`GET ${path}: not a full page (${page.records.length} records, nextCursor ${page.nextCursor})`)
    }
  }
}

const rotating = <A>(items: ReadonlyArray<A>): () => A => {
  let i = 0
  return () => items[i++ % items.length]
}

const scenarios = (ids: ReadonlyArray<string>, pagePaths: ReadonlyArray<string>) => {
  const get = (path: () => string) => (request: autocannon.Request): autocannon.Request => ({
    ...request,
    method: "GET",
    path: path(),
    body: ""
  })
  const nextPage = rotating(pagePaths)
  return [
    {
      key: "get-by-id" as const,
      load: { name: "GET /data/{id}", request: { setupRequest: get(() => `/data/${pick(ids)}`) } } satisfies Load
    },
    {
      key: "range-page" as const,
      load: { name: "GET /data?stream&limit=100", request: { setupRequest: get(nextPage) } } satisfies Load
    }
  ]
}

const tail = (file: string, lines: number) => {
  try {
    return readFileSync(file, "utf8").trim().split("\n").slice(-lines).join("\n")
  } catch {
    return ""
  }
}

/** One configuration's server, started, measured over both scenarios, stopped. */
const runConfiguration = (
  setup: {
    readonly pg: ReplicatedPostgres
    readonly logDir: string
    readonly auth: Auth
    readonly ids: ReadonlyArray<string>
    readonly pagePaths: ReadonlyArray<string>
    readonly options: ReplicasBenchOptions
  },
  round: number,
  config: ConfigKey
): Effect.Effect<Array<RunResult>, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const { auth, options, pg } = setup
    const env: Environment = {
      DATABASE_URL: pg.primaryUrl,
      DATABASE_READ_URL: config === "B" ? pg.replicaUrl : undefined,
      REDIS_URL: undefined,
      REDIS_CLUSTER_NODES: undefined,
      KAFKA_BROKERS: undefined,
      CACHE_MAX_ENTRIES: "1",
      RECORD_CACHE_BYTES: "0",
      SHUTDOWN_DELAY: "0s",
      // The server's own defaults, whatever this shell has.
      LOG_LEVEL: undefined,
      LOG_FORMAT: undefined,
      ACCESS_LOG: undefined
    }
    const logFile = join(setup.logDir, `server-round${round}-${config}.log`)
    const fd = yield* Effect.acquireRelease(Effect.sync(() => openSync(logFile, "a")), (fd) =>
      Effect.sync(() => closeSync(fd)))
    log(`round ${round}, ${config}: starting the server (its log: ${logFile})`)
    const server = yield* serverProcess({ env, output: fd, log }).pipe(
      Effect.mapError((e) =>
        new BenchError({ message: `${e.message}\n${logFile}:\n${tail(logFile, 10)}` })
      )
    )
    if (config === "B") yield* attempt((signal) => inRotation(server.base, signal))
    yield* attempt((signal) => checkPages(server.base, auth, setup.pagePaths, signal))
    const pid = server.pid()
    const results: Array<RunResult> = []
    for (const scenario of scenarios(setup.ids, setup.pagePaths)) {
      log(
        `round ${round}, ${config}: ${scenario.key}: ${WARMUP_SECONDS} s warm-up, then ${options.duration} s, ` +
          `${options.connections} connections`
      )
      const result = yield* attempt(async (signal) => {
        await measure(server.base, auth, scenario.load, options.connections, WARMUP_SECONDS, signal)
        const cpu = () => ({
          server: pid === undefined ? undefined : processCpuMs(pid),
          primary: clusterCpuMs(pg.primaryDir),
          replica: clusterCpuMs(pg.replicaDir)
        })
        const readsBefore = await readCounts(server.base, signal)
        const before = cpu()
        const row = await measure(server.base, auth, scenario.load, options.connections, options.duration, signal)
        const after = cpu()
        const readsAfter = await readCounts(server.base, signal)
        const requests = row.rps * options.duration
        const per = (from: number | undefined, to: number | undefined) =>
          from === undefined || to === undefined || requests <= 0 ? undefined : (to - from) / requests
        return {
          round,
          config,
          scenario: scenario.key,
          rps: row.rps,
          p99Ms: row.percentiles[2],
          non2xx: row.non2xx,
          errors: row.errors,
          serverMs: per(before.server, after.server),
          primaryMs: per(before.primary, after.primary),
          replicaMs: per(before.replica, after.replica),
          reads: readsAfter.total - readsBefore.total,
          replicaReads: readsAfter.replica - readsBefore.replica
        } satisfies RunResult
      })
      log(
        `round ${round}, ${config}: ${scenario.key}: ${count(Math.round(result.rps))} req/s, p99 ${
          result.p99Ms.toFixed(2)
        } ms, replica share ${share(result)}` +
          (result.non2xx + result.errors > 0 ? `, ${result.non2xx} non-2xx, ${result.errors} errors` : "")
      )
      results.push(result)
    }
    return results
  }))

const fixed = (n: number | undefined, digits: number) => n === undefined || Number.isNaN(n) ? "–" : n.toFixed(digits)
/** A's server has no replica, and counts no reads (ReadReplicas.layerNone): all of them are the primary's. */
const share = (r: Pick<RunResult, "config" | "reads" | "replicaReads">) =>
  r.config === "A" ? "0 % (none)" : r.reads <= 0 ? "–" : `${(100 * r.replicaReads / r.reads).toFixed(1)} %`

const median = (values: ReadonlyArray<number | undefined>): number | undefined => {
  const known = values.filter((v): v is number => v !== undefined && !Number.isNaN(v)).toSorted((a, b) => a - b)
  if (known.length === 0) return undefined
  const mid = known.length >> 1
  return known.length % 2 === 1 ? known[mid] : (known[mid - 1] + known[mid]) / 2
}

const SCENARIO_NAMES: Record<ScenarioKey, string> = {
  "get-by-id": "GET /data/{id}",
  "range-page": "GET /data?stream&limit=100"
}
const configLabel = (key: ConfigKey) => CONFIGS.find((c) => c.key === key)!.label

/** A markdown table: the first `left` columns left-aligned, the rest (numbers) right-aligned. */
const markdown = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>, left: number) =>
  [
    `| ${header.join(" | ")} |`,
    `|${header.map((_, i) => i < left ? " --- |" : " ---: |").join("")}`,
    ...rows.map((r) => `| ${r.join(" | ")} |`)
  ].join("\n")

const HEADER = [
  "scenario",
  "configuration",
  "req/s",
  "P99 ms",
  "server CPU ms/req",
  "primary CPU ms/req",
  "replica CPU ms/req",
  "replica share"
]

const describeRuns = (results: ReadonlyArray<RunResult>) =>
  markdown(
    ["round", ...HEADER],
    results.map((r) => [
      String(r.round),
      SCENARIO_NAMES[r.scenario],
      configLabel(r.config),
      count(Math.round(r.rps)),
      fixed(r.p99Ms, 2),
      fixed(r.serverMs, 3),
      fixed(r.primaryMs, 3),
      fixed(r.replicaMs, 3),
      share(r) + (r.non2xx + r.errors > 0 ? ` (${r.non2xx} non-2xx, ${r.errors} errors)` : "")
    ]),
    3
  )

const describeMedians = (results: ReadonlyArray<RunResult>, rounds: number) => {
  const rows: Array<Array<string>> = []
  const lines: Array<string> = []
  for (const scenario of ["get-by-id", "range-page"] as const) {
    const of = (config: ConfigKey) => results.filter((r) => r.scenario === scenario && r.config === config)
    const primaryOf: Partial<Record<ConfigKey, number>> = {}
    for (const { key } of CONFIGS) {
      const runs = of(key)
      if (runs.length === 0) continue
      const primary = median(runs.map((r) => r.primaryMs))
      if (primary !== undefined) primaryOf[key] = primary
      rows.push([
        SCENARIO_NAMES[scenario],
        configLabel(key),
        count(Math.round(median(runs.map((r) => r.rps)) ?? 0)),
        fixed(median(runs.map((r) => r.p99Ms)), 2),
        fixed(median(runs.map((r) => r.serverMs)), 3),
        fixed(primary, 3),
        fixed(median(runs.map((r) => r.replicaMs)), 3),
        share({
          config: key,
          reads: runs.reduce((n, r) => n + r.reads, 0),
          replicaReads: runs.reduce((n, r) => n + r.replicaReads, 0)
        })
      ])
    }
    if (primaryOf.A !== undefined && primaryOf.B !== undefined && primaryOf.A > 0) {
      lines.push(
        `${SCENARIO_NAMES[scenario]}: PostgreSQL CPU on the primary per request ${primaryOf.A.toFixed(3)} ms (A) -> ${
          primaryOf.B.toFixed(3)
        } ms (B), ${(100 * (1 - primaryOf.B / primaryOf.A)).toFixed(0)} % of it moved off the primary`
      )
    }
  }
  return [
    `Medians over ${rounds} round${rounds === 1 ? "" : "s"} (replica share: over all rounds' reads):`,
    "",
    markdown(HEADER, rows, 2),
    "",
    ...lines
  ].join("\n")
}

const machine = () =>
  `${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? "unknown cpu"}), ` +
  `${Math.round(totalmem() / 2 ** 30)} GiB RAM, ${process.platform}/${process.arch}, node ${process.version}`

export const runReplicasBench = (options: ReplicasBenchOptions): Effect.Effect<void, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const started = performance.now()
    const logDir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "strata-bench-replicas-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    log("starting a PostgreSQL 15 primary and a streaming replica")
    const pg = yield* Effect.acquireRelease(
      attempt(() => startReplicatedPostgres({ settings: PG_SETTINGS })),
      (pg) =>
        Effect.promise(() => pg.stop()).pipe(
          Effect.tap(() => Effect.sync(() => log("stopped and removed the primary and the replica")))
        )
    )
    const url = pg.primaryUrl
    yield* strataCli(["migrate"], { DATABASE_URL: url, LOG_LEVEL: "Warn" })
    log(`loading ${count(options.rows)} rows into the primary (COPY, then VACUUM (ANALYZE))`)
    const db = yield* attempt(() => newDatabase(url, "postgres", SPAN))
    const load = yield* attempt((signal) => growTo(url, db, options.rows, () => {}, signal))
    const auth = yield* benchKey(url)
    const replayStarted = performance.now()
    yield* attempt(async () => {
      await psql(url, "CREATE EXTENSION IF NOT EXISTS pg_prewarm")
      await pg.caughtUp()
    })
    const replaySeconds = (performance.now() - replayStarted) / 1000
    const prewarm = "SELECT count(*), coalesce(sum(pg_prewarm(c.oid)), 0) FROM pg_class c " +
      "WHERE c.relkind IN ('r', 'i') AND c.relname LIKE 'records%'"
    const warmed = yield* attempt(() => Promise.all([pg.psql("primary", prewarm), pg.psql("replica", prewarm)]))
    const streams = (yield* attempt(() =>
      psql(url, `SELECT stream FROM records GROUP BY stream HAVING count(*) > ${PAGE} ORDER BY stream`)
    )).split("\n").filter((s) =>
      s !== ""
    )
    if (streams.length === 0) {
      return yield* new BenchError({ message: `no stream holds more than ${PAGE} records: load more --rows` })
    }
    const pagePaths = streams.map((s) => `/data?stream=${encodeURIComponent(s)}&limit=${PAGE}`)
    const ids = db.uniform.items
    const settings = yield* attempt(() =>
      pg.psql(
        "primary",
        "SELECT string_agg(name || ' = ' || setting || coalesce(unit, ''), ', ' ORDER BY name) FROM pg_settings " +
          "WHERE name IN ('shared_buffers', 'effective_cache_size', 'work_mem', 'fsync', 'synchronous_commit', " +
          "'max_connections', 'hot_standby_feedback')"
      )
    )
    const version = yield* attempt(() => pg.psql("primary", "SHOW server_version"))
    const loadSeconds = load.seconds + load.vacuumSeconds

    console.log([
      "bench replicas: reads on the primary alone (A) and with a streaming replica (B)",
      `machine: ${machine()}`,
      `PostgreSQL ${version}: a primary and a streaming replica of it (pg_basebackup), both on this machine; ${settings}`,
      `data: ${count(options.rows)} orders of about 300 bytes in ${SPAN.partitions} monthly partitions, ` +
      `loaded in ${loadSeconds.toFixed(0)} s (COPY and VACUUM (ANALYZE)), replayed by the replica in ${
        replaySeconds.toFixed(1)
      } s; then both nodes' records partitions and indexes read into shared buffers (pg_prewarm: ${
        warmed.map((w) => `${w.split("|")[1]} blocks`).join(", ")
      })`,
      "servers: a new one per configuration and round; CACHE_MAX_ENTRIES=1, RECORD_CACHE_BYTES=0, no Redis, " +
      "SHUTDOWN_DELAY=0s, else the defaults (LOG_LEVEL=Info, access log on, into a file; DATABASE_POOL_MAX " +
      `${
        process.env.DATABASE_POOL_MAX ?? "10"
      } per node). A: DATABASE_URL the primary. B: and DATABASE_READ_URL the replica`,
      `load: autocannon, ${options.connections} connections, ${WARMUP_SECONDS} s warm-up then ${options.duration} s ` +
      `per scenario, A and B alternating over ${options.rounds} rounds. get-by-id: ${
        count(ids.length)
      } ids drawn uniformly from the loaded ones; range-page: the first page of ${PAGE} of stream ${
        streams.join(", ")
      } in turn (each holds more than ${PAGE} records, so every page is full)`,
      "CPU ms/req: CPU time over the run divided by its requests, of the server process and of each cluster " +
      "(its postmaster and children, from /proc). Replica share: of the reads strata_db_reads_total counted " +
      "(a read by id may be one statement for several requests)",
      ""
    ].join("\n"))

    const results: Array<RunResult> = []
    for (let round = 1; round <= options.rounds; round++) {
      for (const { key } of CONFIGS) {
        results.push(...yield* runConfiguration({ pg, logDir, auth, ids, pagePaths, options }, round, key))
      }
    }

    const elapsed = (performance.now() - started) / 1000
    console.log([
      describeRuns(results),
      "",
      describeMedians(results, options.rounds),
      "",
      "On this machine both PostgreSQL nodes, the server and the load generator share " +
      `${availableParallelism()} cores, so B's throughput need not rise: what a replica on its own machine ` +
      "(N replicas on N machines) gives is shown by how much PostgreSQL CPU per read moves off the primary " +
      "(primary CPU ms/req, A against B) onto the replica.",
      `The run took ${(elapsed / 60).toFixed(1)} min (the load ${loadSeconds.toFixed(0)} s of it).`
    ].join("\n"))
  }))
