/**
 * What the scale benchmark loads, and how: orders of about 300 bytes, COPYed
 * into `records` (the parent, so PostgreSQL routes each row to its partition)
 * by Seed.ts's copyRecords, spread uniformly over a span of partitions that
 * ends at the time of the first load, so the newest partition is the current
 * one. A database grows in steps (1M, then 9M more in the same range…), never
 * reloaded from zero; each step ends with VACUUM (ANALYZE), which sets the
 * visibility maps that autovacuum would in a deployment.
 *
 * The rows have no outbox rows: as if every event had been relayed long ago.
 * Samples of the ids are drawn while loading, across every step: one uniform
 * over the whole table, one over the newest RECENT_FRACTION of the range.
 */
import { partitionFor, PartitionInterval } from "@strata/server"
import { availableParallelism } from "node:os"
import { psql } from "./Postgres.ts"
import { copyRecords, createPartitions, KEYS_PER_STREAM, Reservoir } from "./Seed.ts"

/** How far back the rows go: `partitions` partitions of `interval`, the newest the current one. */
export interface Span {
  readonly interval: PartitionInterval
  readonly partitions: number
}

/** Ids kept from a uniform sample of the whole table, for reads by id spread over it. */
export const UNIFORM_SAMPLE = 200_000
/** Ids kept from the newest part of the range, for reads of recent records. */
export const RECENT_SAMPLE = 20_000
/** The newest share of the time range that counts as recent. */
export const RECENT_FRACTION = 0.02

/** A database of the cluster and what was loaded into it; saved with the cluster for --reuse. */
export interface DatabaseState {
  readonly name: string
  readonly span: Span
  /** The time range of the rows: [fromMs, toMs), toMs the time of the first load. */
  readonly fromMs: number
  readonly toMs: number
  rows: number
  /** Set while rows go in: a load cut short leaves an unknown number behind. */
  loading: boolean
  uniform: { readonly items: Array<string>; readonly seen: number }
  recent: { readonly items: Array<string>; readonly seen: number }
}

/** `month`, `week:52`, `day:366`; the count defaults to 15 months' worth. */
export const parseSpan = (text: string): Span => {
  const [name, n, ...rest] = text.trim().split(":")
  const interval = PartitionInterval.find((i) => i === name)
  const defaults = { month: 15, week: 65, day: 456 }
  const partitions = n === undefined ? (interval === undefined ? Number.NaN : defaults[interval]) : Number(n)
  if (interval === undefined || rest.length > 0 || !Number.isSafeInteger(partitions) || partitions < 1) {
    throw new Error(`expected ${PartitionInterval.join(", ")}, optionally with a count (day:366); got ${text}`)
  }
  return { interval, partitions }
}

/** A point of the partition series: a bare count is months up to 36, days above (15: month, 366: day). */
export const parsePartitionPoint = (text: string): Span => {
  const n = Number(text.trim())
  if (text.includes(":") || !Number.isSafeInteger(n)) return parseSpan(text)
  if (n < 1) throw new Error(`a partition count must be positive, got ${text}`)
  return { interval: n <= 36 ? "month" : "day", partitions: n }
}

export const spanLabel = (span: Span): string =>
  `${span.partitions} ${span.interval}${span.partitions === 1 ? "" : "s"}`

/** [fromMs, toMs): the start of the span's first partition to `nowMs`, which is in the last. */
export const spanRange = (span: Span, nowMs: number): { readonly fromMs: number; readonly toMs: number } => {
  let first = partitionFor(span.interval, nowMs)
  for (let i = 1; i < span.partitions; i++) first = partitionFor(span.interval, first.from.getTime() - 1)
  return { fromMs: first.from.getTime(), toMs: nowMs }
}

/** The state of a database that has nothing yet, and its partitions made (the server's names and bounds). */
export const newDatabase = async (databaseUrl: string, name: string, span: Span): Promise<DatabaseState> => {
  const { fromMs, toMs } = spanRange(span, Date.now())
  await createPartitions(databaseUrl, span.interval, fromMs, toMs)
  return {
    name,
    span,
    fromMs,
    toMs,
    rows: 0,
    loading: false,
    uniform: { items: [], seen: 0 },
    recent: { items: [], seen: 0 }
  }
}

// ---------------------------------------------------------------------------
// The rows

const CITIES = [
  "75011 Paris, FR",
  "69002 Lyon, FR",
  "10115 Berlin, DE",
  "80331 Muenchen, DE",
  "28013 Madrid, ES",
  "20121 Milano, IT",
  "3011 Rotterdam, NL",
  "4000-322 Porto, PT"
]
const STREETS = ["Rue de la Republique", "Hauptstrasse", "Calle Mayor", "Via Roma", "Coolsingel", "Rua das Flores"]
const STATUSES = ["new", "paid", "paid", "shipped", "shipped", "delivered", "cancelled"]
const CURRENCIES = ["EUR", "EUR", "EUR", "USD", "GBP"]
const TAGS = ["web", "mobile", "promo", "gift", "express", "b2b", "first-order"]

const int = (n: number) => Math.floor(Math.random() * n)
const hex = (digits: number) => int(16 ** digits).toString(16).padStart(digits, "0")

/**
 * An order as JSON text, about 300 bytes: a customer, 1 to 4 items with sku,
 * quantity and price, their total with decimals, a currency and a status, a
 * shipping address and a few tags. Plain ASCII, nothing COPY must escape.
 */
export const orderData = (): string => {
  let items = ""
  let total = 0
  const lines = 1 + int(4)
  for (let i = 0; i < lines; i++) {
    const qty = 1 + int(3)
    const price = (99 + int(19_900)) / 100
    total += qty * price
    items += `${i === 0 ? "" : ","}{"sku":"SKU-${10_000 + int(90_000)}","qty":${qty},"price":${price.toFixed(2)}}`
  }
  const tags = TAGS.filter(() => Math.random() < 0.25).map((t) => `"${t}"`).join(",")
  return `{"orderId":"ord-${hex(8)}${hex(4)}","customer":"customer-${int(KEYS_PER_STREAM)}",` +
    `"amount":${total.toFixed(2)},"currency":"${CURRENCIES[int(CURRENCIES.length)]}",` +
    `"status":"${STATUSES[int(STATUSES.length)]}","items":[${items}],` +
    `"shipTo":"${1 + int(200)} ${STREETS[int(STREETS.length)]}, ${CITIES[int(CITIES.length)]}","tags":[${tags}]}`
}

export interface LoadStep {
  readonly added: number
  readonly seconds: number
  readonly vacuumSeconds: number
}

/**
 * Adds rows to `db` until it holds `rows`, in the same time range as before,
 * then VACUUM (ANALYZE)s; `save` is called before (marked loading) and after.
 */
export const growTo = async (
  databaseUrl: string,
  db: DatabaseState,
  rows: number,
  save: () => void,
  signal: AbortSignal
): Promise<LoadStep> => {
  const added = rows - db.rows
  if (added <= 0) return { added: 0, seconds: 0, vacuumSeconds: 0 }
  db.loading = true
  save()
  const uniform = new Reservoir(UNIFORM_SAMPLE, db.uniform)
  const recent = new Reservoir(RECENT_SAMPLE, db.recent)
  const recentFrom = db.toMs - RECENT_FRACTION * (db.toMs - db.fromMs)
  const started = performance.now()
  await copyRecords({
    databaseUrl,
    rows: added,
    // As `seed`: more streams than cores only queue for the CPU.
    jobs: Math.min(4, availableParallelism()),
    fromMs: db.fromMs,
    toMs: db.toMs,
    data: orderData,
    onRow: (id, ms) => {
      uniform.offer(id)
      if (ms >= recentFrom) recent.offer(id)
    },
    signal
  })
  const loaded = performance.now()
  await psql(databaseUrl, "VACUUM (ANALYZE) records")
  const vacuumed = performance.now()
  db.rows = rows
  db.loading = false
  db.uniform = { items: uniform.items, seen: uniform.seen }
  db.recent = { items: recent.items, seen: recent.seen }
  save()
  return { added, seconds: (loaded - started) / 1000, vacuumSeconds: (vacuumed - loaded) / 1000 }
}

export interface TableSize {
  /** Partitions of `records`, the server's ahead of need included, and those holding rows. */
  readonly partitions: number
  readonly partitionsWithRows: number
  /** Heap with TOAST, free space and visibility maps (pg_table_size), over the partitions. */
  readonly tableBytes: number
  readonly indexBytes: number
  readonly totalBytes: number
}

export const tableSize = async (databaseUrl: string): Promise<TableSize> => {
  const out = await psql(
    databaseUrl,
    `SELECT count(*), count(*) FILTER (WHERE pg_relation_size(inhrelid) > 0),
            coalesce(sum(pg_table_size(inhrelid)), 0), coalesce(sum(pg_indexes_size(inhrelid)), 0),
            coalesce(sum(pg_total_relation_size(inhrelid)), 0)
       FROM pg_inherits WHERE inhparent = 'records'::regclass`
  )
  const [partitions, partitionsWithRows, tableBytes, indexBytes, totalBytes] = out.split("|").map(Number)
  return { partitions, partitionsWithRows, tableBytes, indexBytes, totalBytes }
}
