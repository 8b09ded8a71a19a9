/**
 * The scale benchmark's results and how they read: one block per size (the
 * load, the table's size, the probe, the scenarios, their statements and waits),
 * a summary against the first size of each series, and the same as JSON.
 */
import { count, formatTable, type Hits, ratio } from "./Measure.ts"
import type { LoadStep, Span, TableSize } from "./ScaleLoad.ts"
import { spanLabel } from "./ScaleLoad.ts"
import { LOCK_MANAGER, type Probe, type Statement, type StatementTotals, type Waits } from "./ScaleStats.ts"

export interface ScenarioResult {
  readonly key: string
  readonly name: string
  /** Which server answered: the one with the Redis cache, or the one without any. */
  readonly server: "cached" | "uncached"
  readonly rps: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly non2xx: number
  readonly errors: number
  /** CPU ms per request of the server that answered, and of the PostgreSQL cluster (undefined: not on Linux). */
  readonly serverCpuMs?: number | undefined
  readonly databaseCpuMs?: number | undefined
  readonly cacheHits?: Hits
  readonly statements: ReadonlyArray<Statement>
  readonly statementTotals: StatementTotals
  readonly waits: Waits
}

export interface SizeResult {
  readonly series: "rows" | "partitions"
  readonly label: string
  readonly database: string
  readonly rows: number
  readonly span: Span
  readonly from: string
  readonly to: string
  readonly load: LoadStep
  readonly size: TableSize
  readonly probe: Probe
  readonly scenarios: ReadonlyArray<ScenarioResult>
  readonly notes: ReadonlyArray<string>
  /** The point's time, its load included. */
  readonly elapsedSeconds: number
}

/** CPU ms per request, to the microsecond; "-" when it was not read. */
const cpuMs = (n: number | undefined): string => n === undefined || Number.isNaN(n) ? "-" : n.toFixed(3)

/** 1e5 → 100k, 1e6 → 1M, 2.5e7 → 25M. */
export const shortCount = (n: number): string =>
  n >= 1e9 && n % 1e8 === 0
    ? `${n / 1e9}G`
    : n >= 1e6 && n % 1e5 === 0
    ? `${n / 1e6}M`
    : n >= 1e3 && n % 100 === 0
    ? `${n / 1e3}k`
    : count(n)

const bytes = (n: number) =>
  n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${count(n)} B`
const ms = (n: number) => Number.isNaN(n) ? "-" : n < 10 ? n.toFixed(3) : n.toFixed(1)
const percent = (part: number, whole: number) => whole === 0 ? "-" : `${(100 * part / whole).toFixed(0)} %`

const waitLine = (w: Waits): string => {
  const lock = w.events.find((e) => e.event === LOCK_MANAGER)
  const top = w.events.slice(0, 4).map((e) =>
    `${e.event} ${count(e.samples)}/${count(w.samples)} (${(e.backends / Math.max(1, w.samples)).toFixed(2)})`
  )
  return `${LOCK_MANAGER} ${count(lock?.samples ?? 0)}/${count(w.samples)} samples` +
    (lock !== undefined ? ` (${(lock.backends / Math.max(1, w.samples)).toFixed(2)} backends on average)` : "") +
    `; top: ${top.length === 0 ? "no active backend seen" : top.join(", ")}`
}

export const describeSize = (r: SizeResult): string => {
  const loaded = r.load.added === 0
    ? "load: nothing to add (rows from an earlier run)"
    : `load: +${count(r.load.added)} rows in ${r.load.seconds.toFixed(1)} s ` +
      `(${count(Math.round(r.load.added / r.load.seconds))} rows/s), VACUUM (ANALYZE) ${
        r.load.vacuumSeconds.toFixed(1)
      } s`
  const p = r.probe
  const lines = [
    `== ${r.series === "rows" ? "rows" : "partitions"}: ${r.label} ==`,
    `database ${r.database}: ${count(r.rows)} rows over ${spanLabel(r.span)} (${r.from} → ${r.to}); ` +
    `${r.size.partitions} partitions, ${r.size.partitionsWithRows} with rows (the others the server's, ahead of need)`,
    loaded,
    `size: table ${bytes(r.size.tableBytes)}, indexes ${bytes(r.size.indexBytes)}, total ${bytes(r.size.totalBytes)}, ${
      (r.size.totalBytes / Math.max(1, r.rows)).toFixed(0)
    } bytes/row`,
    `probe (EXPLAIN ANALYZE, BUFFERS of a read by id through records, generic plan, ${p.executions} ids): ` +
    `first execution planning ${ms(p.firstPlanningMs)} ms (${count(p.firstPlanningBlocks)} blocks), ` +
    `execution ${ms(p.firstExecutionMs)} ms; then planning ${ms(p.planningMs)} ms, execution ${
      ms(p.executionMs)
    } ms (max ${ms(p.maxExecutionMs)}), shared hit ${p.hitBlocks} read ${p.readBlocks} blocks (medians); ` +
    `subplans removed ${p.subplansRemoved}; ${p.plan}`,
    "",
    formatTable(
      [
        "scenario",
        "server",
        "req/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "errors",
        "LockManager waits",
        "server cpu ms/req",
        "pg cpu ms/req"
      ],
      r.scenarios.map((s) => {
        const lock = s.waits.events.find((e) => e.event === LOCK_MANAGER)
        return [
          s.key,
          s.server,
          count(Math.round(s.rps)),
          ms(s.p50Ms),
          ms(s.p99Ms),
          count(s.non2xx),
          count(s.errors),
          `${count(lock?.samples ?? 0)}/${count(s.waits.samples)}`,
          cpuMs(s.serverCpuMs),
          cpuMs(s.databaseCpuMs)
        ]
      })
    ),
    ...r.scenarios.flatMap((s) =>
      s.cacheHits !== undefined ? [`${s.key}: Cache-Status while measuring: ${ratio(s.cacheHits)} of 2xx`] : []
    ),
    ...r.notes,
    "",
    "statements (pg_stat_statements, top by planning + execution time; blocks are shared hit+read per call):",
    ...r.scenarios.flatMap((s) => [
      `  ${s.key}: ${count(s.statementTotals.calls)} calls of ${count(s.statementTotals.statements)} statements, ` +
      `planning ${count(Math.round(s.statementTotals.planMs))} ms, execution ${
        count(Math.round(s.statementTotals.execMs))
      } ms in all`,
      ...(s.statements.length === 0 ? ["    (none)"] : formatTable(
        ["calls", "plan ms", "exec ms", "blocks", "read", "total ms", "query"],
        s.statements.map((q) => [
          count(q.calls),
          ms(q.meanPlanMs),
          ms(q.meanExecMs),
          q.blocksPerCall.toFixed(1),
          q.readsPerCall.toFixed(2),
          count(Math.round(q.totalMs)),
          q.query
        ]),
        [6]
      ).split("\n").map((line) => `    ${line}`))
    ]),
    "",
    "waits (active backends of the database in pg_stat_activity, sampled every 75 ms: " +
    "samples with one in the wait / samples, and the mean backends in it):",
    ...r.scenarios.map((s) => `  ${s.key}: ${waitLine(s.waits)}`)
  ]
  return lines.join("\n")
}

/** Against the first size of the series: req/s and P99 side by side for each size, with the ratio. */
export const describeSummary = (title: string, sizes: ReadonlyArray<SizeResult>): string => {
  if (sizes.length === 0) return ""
  const [base] = sizes
  const keys = base.scenarios.map((s) => s.key)
  const of = (r: SizeResult, key: string) => r.scenarios.find((s) => s.key === key)
  const times = (value: number, baseline: number | undefined) =>
    baseline === undefined || baseline === 0 || Number.isNaN(value) || Number.isNaN(baseline)
      ? ""
      : ` (${(value / baseline).toFixed(2)}x)`
  const table = (header: string, value: (s: ScenarioResult) => number, format: (n: number) => string) =>
    formatTable(
      [header, ...sizes.map((r) => r.label)],
      keys.map((key) => [
        key,
        ...sizes.map((r, i) => {
          const s = of(r, key)
          const b = of(base, key)
          return s === undefined ? "-" : format(value(s)) + (i === 0 ? "" : times(value(s), b && value(b)))
        })
      ])
    )
  return [
    `== summary: ${title} (ratios to ${base.label}) ==`,
    table("req/s", (s) => s.rps, (n) => count(Math.round(n))),
    "",
    table("p99 ms", (s) => s.p99Ms, ms),
    "",
    table("server cpu ms/req", (s) => s.serverCpuMs ?? Number.NaN, cpuMs),
    "",
    table("pg cpu ms/req", (s) => s.databaseCpuMs ?? Number.NaN, cpuMs),
    "",
    table("LockManager waits", (s) => {
      const lock = s.waits.events.find((e) => e.event === LOCK_MANAGER)
      return s.waits.samples === 0 ? 0 : (lock?.samples ?? 0) / s.waits.samples
    }, (n) => percent(n, 1)),
    "",
    formatTable(
      ["size", ...sizes.map((r) => r.label)],
      [
        ["rows", ...sizes.map((r) => count(r.rows))],
        ["total size", ...sizes.map((r) => bytes(r.size.totalBytes))],
        ["bytes/row", ...sizes.map((r) => (r.size.totalBytes / Math.max(1, r.rows)).toFixed(0))],
        [
          "load rows/s",
          ...sizes.map((r) => r.load.added === 0 ? "-" : count(Math.round(r.load.added / r.load.seconds)))
        ],
        ["probe exec ms", ...sizes.map((r) => ms(r.probe.executionMs))],
        ["probe 1st plan ms", ...sizes.map((r) => ms(r.probe.firstPlanningMs))]
      ]
    )
  ].join("\n")
}
