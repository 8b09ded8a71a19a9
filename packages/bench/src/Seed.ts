/**
 * `seed --rows N [--database-url URL] [--jobs J]`: bulk-loads N synthetic
 * records with COPY, so reads can be measured against a large table.
 *
 * The schema must already exist (the server migrates at startup; `bench --rows N`
 * seeds after starting it). The outbox is left empty. Ids and partitions are the
 * server's own (makeRecordId, partitionFor), so the rows are ones it could have written.
 */
import { makeRecordId, nextPartition, type PartitionBounds, partitionFor, PartitionInterval } from "@strata/server"
import { availableParallelism } from "node:os"
import { psql, psqlSpawnError, spawnPsql } from "./Postgres.ts"

/** The streams seeded records (and the benchmark's own writes) go to. */
export const STREAMS: ReadonlyArray<string> = ["orders", "payments", "shipments", "sensor.temp"]
/** Distinct keys per stream: enough that a key holds a handful of records, not one or millions. */
export const KEYS_PER_STREAM = 10_000
/** The tenant seeded records belong to, and the one the bench's key acts for. */
export const TENANT = "default"
const STATUSES = ["new", "paid", "shipped", "cancelled"]
const SPAN_MS = 365 * 86_400_000
// Rows per write to psql: large enough to amortise the pipe, small enough to keep memory flat.
const CHUNK_ROWS = 5_000

/**
 * One `COPY records … FROM STDIN` in its own psql process, fed with backpressure.
 * Aborting `signal` kills psql: PostgreSQL then rolls the COPY back.
 */
const openCopy = (databaseUrl: string, signal: AbortSignal | undefined) => {
  const child = spawnPsql(databaseUrl, [
    "-c",
    "COPY records (tenant_id, id, stream, key, occurred_at, data) FROM STDIN"
  ], ["pipe", "ignore", "pipe"])
  const kill = () => child.kill("SIGKILL")
  signal?.addEventListener("abort", kill, { once: true })
  child.on("close", () => signal?.removeEventListener("abort", kill))
  let err = ""
  child.stderr!.setEncoding("utf8").on("data", (s: string) => err += s)
  const done = new Promise<void>((resolve, reject) => {
    child.on("error", (e) => reject(psqlSpawnError(e)))
    child.on("close", (code) => code === 0 ? resolve() : reject(new Error(err.trim() || `psql COPY exited ${code}`)))
  })
  // Rejections surface through `write`/`finish`; keep an early failure from being unhandled meanwhile.
  done.catch(() => {})
  const stdin = child.stdin!
  stdin.on("error", () => {})
  return {
    write: (chunk: string): Promise<void> =>
      stdin.write(chunk)
        ? Promise.resolve()
        : Promise.race([new Promise<void>((resolve) => stdin.once("drain", resolve)), done]),
    finish: (): Promise<void> => {
      stdin.end()
      return done
    }
  }
}

/** Every partition of `interval` that overlaps [fromMs, toMs]. */
export const partitionsBetween = (
  interval: PartitionInterval,
  fromMs: number,
  toMs: number
): Array<PartitionBounds> => {
  const out = [partitionFor(interval, fromMs)]
  while (out[out.length - 1].to.getTime() <= toMs) out.push(nextPartition(interval, out[out.length - 1]))
  return out
}

/** Creates the partitions of `interval` over [fromMs, toMs] that do not exist yet, as the server names them. */
export const createPartitions = async (
  databaseUrl: string,
  interval: PartitionInterval,
  fromMs: number,
  toMs: number
): Promise<void> => {
  await psql(
    databaseUrl,
    partitionsBetween(interval, fromMs, toMs).map((p) =>
      `CREATE TABLE IF NOT EXISTS ${p.name} PARTITION OF records
         FOR VALUES FROM ('${p.from.toISOString()}') TO ('${p.to.toISOString()}');`
    ).join("\n")
  )
}

/** A uniform sample of everything offered (Algorithm R) in bounded memory; it may go on from a saved state. */
export class Reservoir<A> {
  readonly items: Array<A>
  readonly size: number
  seen: number

  constructor(size: number, saved?: { readonly items: ReadonlyArray<A>; readonly seen: number }) {
    this.size = size
    this.items = [...(saved?.items ?? [])]
    this.seen = saved?.seen ?? 0
  }

  offer(item: A): void {
    if (this.seen < this.size) this.items.push(item)
    else {
      const j = Math.floor(Math.random() * (this.seen + 1))
      if (j < this.size) this.items[j] = item
    }
    this.seen++
  }
}

export interface CopyOptions {
  readonly databaseUrl: string
  readonly rows: number
  /** Parallel COPY streams; each loads a contiguous slice of time. */
  readonly jobs: number
  /** The rows' times are spread evenly over [fromMs, toMs). */
  readonly fromMs: number
  readonly toMs: number
  /** The `data` column: JSON text of plain ASCII without tabs, newlines or backslashes (nothing to escape). */
  readonly data: (i: number) => string
  /** Sees every row's id and time, in time order within a job. */
  readonly onRow?: (id: string, ms: number) => void
  readonly signal?: AbortSignal
}

/**
 * COPYs `rows` records of tenant TENANT into `records` (the parent: PostgreSQL
 * routes each row to its partition, which must exist), round-robin over STREAMS,
 * KEYS_PER_STREAM keys each. Ids are the server's, from each row's time.
 */
export const copyRecords = async (options: CopyOptions): Promise<void> => {
  const { databaseUrl, fromMs, rows } = options
  const jobs = Math.max(1, Math.min(options.jobs, rows))
  const step = (options.toMs - fromMs) / rows
  // Rows come in time order within each job, so every index grows at its right
  // edge (UUIDv7 ids lead with the time) instead of taking random page splits.
  const load = async (first: number, end: number) => {
    const copy = openCopy(databaseUrl, options.signal)
    let i = first
    while (i < end) {
      const stop = Math.min(end, i + CHUNK_ROWS)
      let chunk = ""
      for (; i < stop; i++) {
        const ms = Math.floor(fromMs + (i + Math.random()) * step)
        const id = makeRecordId(ms)
        options.onRow?.(id, ms)
        const stream = STREAMS[i % STREAMS.length]
        const key = `${stream}-${Math.floor(Math.random() * KEYS_PER_STREAM)}`
        // COPY text format: the values have no tabs, newlines or backslashes to escape.
        chunk += `${TENANT}\t${id}\t${stream}\t${key}\t${new Date(ms).toISOString()}\t${options.data(i)}\n`
      }
      await copy.write(chunk)
    }
    await copy.finish()
  }
  await Promise.all(
    Array.from({ length: jobs }, (_, j) => load(Math.floor(rows * j / jobs), Math.floor(rows * (j + 1) / jobs)))
  )
}

/** PARTITION_INTERVAL as the server reads it: the seeded partitions must be the ones it would make. */
const partitionInterval = (): PartitionInterval => {
  const value = process.env.PARTITION_INTERVAL ?? "month"
  const known = PartitionInterval.find((interval) => interval === value)
  if (known !== undefined) return known
  throw new Error(`PARTITION_INTERVAL must be ${PartitionInterval.join(", ")} (as the server's), got ${value}`)
}

export interface SeedOptions {
  readonly databaseUrl: string
  readonly rows: number
  /** Parallel COPY streams; each loads a contiguous slice of time. */
  readonly jobs?: number
  /** How many of the generated ids to hand back, chosen uniformly (for reads by id). */
  readonly sampleIds?: number
}

export interface SeedResult {
  readonly rows: number
  readonly loadSeconds: number
  readonly analyzeSeconds: number
  readonly sampleIds: ReadonlyArray<string>
}

/** Loads `rows` records spread over the last 12 months, then ANALYZEs. */
export const seed = async (options: SeedOptions): Promise<SeedResult> => {
  const { databaseUrl, rows } = options
  const exists = await psql(databaseUrl, "SELECT to_regclass('records') IS NOT NULL")
  if (exists !== "t") {
    throw new Error("table records does not exist: start the server once against this database so it migrates")
  }

  const toMs = Date.now()
  const fromMs = toMs - SPAN_MS
  await createPartitions(databaseUrl, partitionInterval(), fromMs, toMs)

  const sample = new Reservoir<string>(options.sampleIds ?? 0)
  const started = performance.now()
  await copyRecords({
    databaseUrl,
    rows,
    jobs: options.jobs ?? Math.min(4, availableParallelism()),
    fromMs,
    toMs,
    data: (i) =>
      `{"seq":${i},"amount":${(Math.random() * 1000).toFixed(2)},"status":"${STATUSES[i % STATUSES.length]}"}`,
    onRow: (id) => sample.offer(id)
  })
  const loaded = performance.now()
  await psql(databaseUrl, "ANALYZE records")
  const analyzed = performance.now()

  return {
    rows,
    loadSeconds: (loaded - started) / 1000,
    analyzeSeconds: (analyzed - loaded) / 1000,
    sampleIds: sample.items
  }
}

/** Parses a positive integer such as `1000000`, `1_000_000` or `1e6`. */
export const parseCount = (name: string, text: string): number => {
  const n = Number(text.replaceAll("_", ""))
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${text}`)
  return n
}

export const describeSeed = (r: SeedResult): string =>
  `seeded ${r.rows.toLocaleString("en-US")} rows in ${r.loadSeconds.toFixed(1)} s ` +
  `(${Math.round(r.rows / r.loadSeconds).toLocaleString("en-US")} rows/s), ANALYZE ${r.analyzeSeconds.toFixed(1)} s`
