/**
 * What PostgreSQL itself says during the scale benchmark: the statements of a
 * scenario (pg_stat_statements, reset before it), what its backends waited on
 * (pg_stat_activity, sampled while it runs), and a probe of a read by id through
 * the parent table with a generic plan (EXPLAIN ANALYZE), which does not depend
 * on the server's code.
 */
import { psql } from "./Postgres.ts"

const QUERY_CHARS = 100
const TOP_STATEMENTS = 5
const SAMPLE_EVERY_MS = 75

export interface Statement {
  readonly calls: number
  readonly meanPlanMs: number
  readonly meanExecMs: number
  /** Shared blocks hit + read per call, and of those read (not in shared_buffers). */
  readonly blocksPerCall: number
  readonly readsPerCall: number
  readonly totalMs: number
  readonly query: string
}

/** Every statement of the scenario together: a server that sends many distinct texts spreads its cost over them. */
export interface StatementTotals {
  readonly statements: number
  readonly calls: number
  readonly planMs: number
  readonly execMs: number
}

export const resetStatements = (databaseUrl: string): Promise<string> =>
  psql(databaseUrl, "SELECT pg_stat_statements_reset()")

const OURS = `dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND query NOT LIKE '%pg_stat_statements%'`

/** Every statement of this database since the reset. */
export const statementTotals = async (databaseUrl: string): Promise<StatementTotals> => {
  const out = await psql(
    databaseUrl,
    `SELECT count(*), coalesce(sum(calls), 0), coalesce(sum(total_plan_time), 0), coalesce(sum(total_exec_time), 0)
       FROM pg_stat_statements WHERE ${OURS}`
  )
  const [statements, calls, planMs, execMs] = out.split("|").map(Number)
  return { statements, calls, planMs, execMs }
}

/** The statements of this database by total time (planning and execution), the most first. */
export const topStatements = async (databaseUrl: string): Promise<Array<Statement>> => {
  const out = await psql(
    databaseUrl,
    `SELECT calls, mean_plan_time, mean_exec_time,
            (shared_blks_hit + shared_blks_read)::float8 / greatest(calls, 1),
            shared_blks_read::float8 / greatest(calls, 1),
            total_plan_time + total_exec_time,
            regexp_replace(query, '\\s+', ' ', 'g')
       FROM pg_stat_statements
      WHERE ${OURS}
      ORDER BY total_plan_time + total_exec_time DESC
      LIMIT ${TOP_STATEMENTS}`
  )
  return out === "" ? [] : out.split("\n").map((line) => {
    const [calls, plan, exec, blocks, reads, total, ...query] = line.split("|")
    const text = query.join("|")
    return {
      calls: Number(calls),
      meanPlanMs: Number(plan),
      meanExecMs: Number(exec),
      blocksPerCall: Number(blocks),
      readsPerCall: Number(reads),
      totalMs: Number(total),
      query: text.length > QUERY_CHARS ? `${text.slice(0, QUERY_CHARS - 1)}…` : text
    }
  })
}

export interface WaitCount {
  /** `type:event` as pg_stat_activity names it; `CPU` for an active backend with no wait event. */
  readonly event: string
  /** Samples in which at least one backend was in it. */
  readonly samples: number
  /** Backends in it, summed over the samples (divided by `samples` of Waits: the mean number). */
  readonly backends: number
}

export interface Waits {
  readonly samples: number
  /** Samples with at least one active backend of the database. */
  readonly active: number
  readonly events: ReadonlyArray<WaitCount>
}

export const LOCK_MANAGER = "LWLock:LockManager"

/**
 * Samples the active client backends of `database` every SAMPLE_EVERY_MS until
 * `signal` aborts, through `run` (a psql session on another database, so the
 * sampler is not among them), and counts what they were waiting on.
 */
export const sampleWaits = async (
  run: (sql: string) => Promise<string>,
  database: string,
  signal: AbortSignal
): Promise<Waits> => {
  const sql = `SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*)
                 FROM pg_stat_activity
                WHERE datname = '${database}' AND backend_type = 'client backend' AND state = 'active'
                GROUP BY 1`
  const events = new Map<string, { samples: number; backends: number }>()
  let samples = 0
  let active = 0
  while (!signal.aborted) {
    const started = performance.now()
    const out = await run(sql)
    samples++
    if (out !== "") active++
    for (const line of out === "" ? [] : out.split("\n")) {
      const [event, n] = line.split("|")
      const entry = events.get(event) ?? { samples: 0, backends: 0 }
      events.set(event, { samples: entry.samples + 1, backends: entry.backends + Number(n) })
    }
    const wait = SAMPLE_EVERY_MS - (performance.now() - started)
    if (wait > 0 && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, wait)
        function done() {
          clearTimeout(timer)
          signal.removeEventListener("abort", done)
          resolve()
        }
        signal.addEventListener("abort", done, { once: true })
      })
    }
  }
  return {
    samples,
    active,
    events: Array.from(events, ([event, c]) => ({ event, ...c })).toSorted((a, b) => b.backends - a.backends)
  }
}

/**
 * Waits until no client backend of `database` has been active for `quietMs`: a
 * scenario whose requests timed out leaves them running in the server, and they
 * would weigh on the next one. Answers the seconds waited, or undefined when
 * it was still busy after `maxMs`.
 */
export const settle = async (
  run: (sql: string) => Promise<string>,
  database: string,
  signal: AbortSignal,
  quietMs = 1_000,
  maxMs = 60_000
): Promise<number | undefined> => {
  const started = performance.now()
  let quietSince = started
  while (!signal.aborted) {
    const now = performance.now()
    const active = Number(
      await run(
        `SELECT count(*) FROM pg_stat_activity
          WHERE datname = '${database}' AND backend_type = 'client backend' AND state = 'active'`
      )
    )
    if (active > 0) quietSince = performance.now()
    else if (now - quietSince >= quietMs) return (quietSince - started) / 1000
    if (now - started > maxMs) return undefined
    await new Promise((resolve) => setTimeout(resolve, SAMPLE_EVERY_MS))
  }
  return undefined
}

export interface Probe {
  readonly executions: number
  /** The first execution, which builds the generic plan. */
  readonly firstPlanningMs: number
  readonly firstExecutionMs: number
  /** Medians over the later executions, on the cached plan. */
  readonly planningMs: number
  readonly executionMs: number
  readonly maxExecutionMs: number
  /** Shared blocks of the first execution's planning, and per later execution (medians). */
  readonly firstPlanningBlocks: number
  readonly hitBlocks: number
  readonly readBlocks: number
  /** Partitions the executor pruned at startup, and the plan's nodes (outermost first). */
  readonly subplansRemoved: number
  readonly plan: string
}

interface PlanNode {
  readonly "Node Type": string
  readonly "Relation Name"?: string
  readonly "Index Name"?: string
  readonly "Subplans Removed"?: number
  readonly "Shared Hit Blocks"?: number
  readonly "Shared Read Blocks"?: number
  readonly Plans?: ReadonlyArray<PlanNode>
}

interface Explained {
  readonly Plan: PlanNode
  readonly Planning?: { readonly "Shared Hit Blocks"?: number; readonly "Shared Read Blocks"?: number }
  readonly "Planning Time": number
  readonly "Execution Time": number
}

const median = (values: ReadonlyArray<number>) => {
  const sorted = values.toSorted((a, b) => a - b)
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor((sorted.length - 1) / 2)]
}

const describePlan = (node: PlanNode): string => {
  const what = node["Index Name"] !== undefined
    ? `${node["Node Type"]} using ${node["Index Name"]}`
    : node["Relation Name"] !== undefined
    ? `${node["Node Type"]} on ${node["Relation Name"]}`
    : node["Node Type"]
  const children = node.Plans ?? []
  return children.length === 0
    ? what
    : `${what} > ${children.length === 1 ? describePlan(children[0]) : `${children.length} subplans`}`
}

/**
 * EXPLAIN (ANALYZE, BUFFERS) of a read by id through `records`, prepared with
 * plan_cache_mode = force_generic_plan (as the server's connections run), once
 * per id of `ids` ([id, occurredAt ISO]) in one session.
 */
export const probeReadById = async (
  databaseUrl: string,
  tenant: string,
  ids: ReadonlyArray<readonly [string, string]>
): Promise<Probe> => {
  const marker = "--explained--"
  const out = await psql(
    databaseUrl,
    [
      "SET plan_cache_mode = force_generic_plan;",
      "PREPARE probe(uuid, timestamptz, text) AS",
      "  SELECT * FROM records WHERE id = $1 AND occurred_at = $2 AND tenant_id = $3;",
      ...ids.flatMap(([id, at]) => [
        `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE probe('${id}', '${at}', '${tenant}');`,
        `\\echo ${marker}`
      ])
    ].join("\n")
  )
  const runs = out.split(marker).map((s) => s.trim()).filter((s) => s !== "").map((s) =>
    (JSON.parse(s) as ReadonlyArray<Explained>)[0]
  )
  if (runs.length === 0) throw new Error("EXPLAIN answered nothing")
  const [first, ...later] = runs
  const rest = later.length > 0 ? later : [first]
  const append = (node: PlanNode): number =>
    (node["Subplans Removed"] ?? 0) + (node.Plans ?? []).reduce((n, child) => n + append(child), 0)
  return {
    executions: runs.length,
    firstPlanningMs: first["Planning Time"],
    firstExecutionMs: first["Execution Time"],
    planningMs: median(rest.map((r) => r["Planning Time"])),
    executionMs: median(rest.map((r) => r["Execution Time"])),
    maxExecutionMs: Math.max(...rest.map((r) => r["Execution Time"])),
    firstPlanningBlocks: (first.Planning?.["Shared Hit Blocks"] ?? 0) + (first.Planning?.["Shared Read Blocks"] ?? 0),
    hitBlocks: median(rest.map((r) => r.Plan["Shared Hit Blocks"] ?? 0)),
    readBlocks: median(rest.map((r) => r.Plan["Shared Read Blocks"] ?? 0)),
    subplansRemoved: append(first.Plan),
    plan: describePlan(first.Plan)
  }
}
