/**
 * Load with autocannon, measured the way every benchmark here reports it:
 * requests/s, latency percentiles over the 2xx responses (from the raw timings),
 * non-2xx and errors, and optionally the `Cache-Status` of the answers.
 */
import autocannon from "autocannon"

/** Headers that carry the bench's API key. */
export type Auth = Readonly<Record<string, string>>

export const CACHE_HIT = "strata; hit"

export interface Hits {
  readonly hits: number
  readonly total: number
}

/** What `measure` runs: one request shape, made afresh per request by its `setupRequest`. */
export interface Load {
  readonly name: string
  readonly request: autocannon.Request
  /** Records stored per successful request, to report records/s next to requests/s. */
  readonly recordsPerRequest?: number
  /** Count `Cache-Status: strata; hit` among the 2xx responses. */
  readonly countCacheStatus?: boolean
}

export interface Row {
  readonly name: string
  readonly rps: number
  /** Latency percentiles of 2xx responses, in ms: p50, p90, p99, p99.9. */
  readonly percentiles: ReadonlyArray<number>
  readonly non2xx: number
  readonly errors: number
  readonly recordsPerSecond?: number
  readonly cacheHits?: Hits
}

export const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(Math.random() * items.length)]

/** Up to `n` distinct items, chosen uniformly. */
export const sample = <A>(items: ReadonlyArray<A>, n: number): Array<A> => {
  const copy = [...items]
  const k = Math.min(n, copy.length)
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(Math.random() * (copy.length - i))
    ;[copy[i], copy[j]] = [copy[j], copy[i]]
  }
  return copy.slice(0, k)
}

export const count = (n: number): string => n.toLocaleString("en-US")

export const ratio = (h: Hits): string =>
  `${count(h.hits)}/${count(h.total)} hit` + (h.total > 0 ? ` (${(100 * h.hits / h.total).toFixed(2)} %)` : "")

const cacheStatus = (headers: autocannon.Request["headers"]): unknown =>
  headers?.["cache-status"] ?? headers?.["Cache-Status"]

/** Reads every id once (a few at a time) and counts `Cache-Status: strata; hit`; every read must answer 200. */
export const readAll = async (
  base: string,
  auth: Auth,
  ids: ReadonlyArray<string>,
  signal: AbortSignal
): Promise<Hits> => {
  let hits = 0
  let next = 0
  const lanes = 8
  await Promise.all(Array.from({ length: lanes }, async () => {
    while (next < ids.length) {
      const id = ids[next++]
      const res = await fetch(`${base}/data/${id}`, {
        headers: auth,
        signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)])
      })
      await res.arrayBuffer()
      if (res.status !== 200) throw new Error(`GET /data/${id} answered ${res.status}`)
      if (res.headers.get("cache-status") === CACHE_HIT) hits++
    }
  }))
  return { hits, total: ids.length }
}

/** Nearest-rank percentile of sorted samples. */
const percentile = (sorted: Float64Array, p: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]

/** Runs `load` against `base` for `duration` seconds; stops early when `signal` aborts. */
export const measure = async (
  base: string,
  auth: Auth,
  load: Load,
  connections: number,
  duration: number,
  signal: AbortSignal
): Promise<Row> => {
  // autocannon's own histogram keeps whole milliseconds; sub-millisecond reads need the raw timings.
  const latencies: Array<number> = []
  let hits = 0
  let counted = 0
  const request: autocannon.Request = load.countCacheStatus === true
    ? {
      ...load.request,
      onResponse: (status, _body, _context, headers) => {
        if (status < 200 || status >= 300) return
        counted++
        if (cacheStatus(headers) === CACHE_HIT) hits++
      }
    }
    : load.request
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      { url: base, connections, duration, headers: auth, requests: [request] },
      (err, res) => err ? reject(err) : resolve(res)
    )
    signal.addEventListener("abort", () => instance.stop(), { once: true })
    instance.on("response", (_client, status, _bytes, ms) => {
      if (status >= 200 && status < 300) latencies.push(ms)
    })
  })
  const sorted = Float64Array.from(latencies).toSorted()
  const rps = result.requests.total / result.duration
  return {
    name: load.name,
    rps,
    percentiles: [0.5, 0.9, 0.99, 0.999].map((p) => percentile(sorted, p)),
    non2xx: result.non2xx,
    errors: result.errors,
    ...(load.recordsPerRequest !== undefined
      ? { recordsPerSecond: (sorted.length / result.duration) * load.recordsPerRequest }
      : {}),
    ...(load.countCacheStatus === true ? { cacheHits: { hits, total: counted } } : {})
  }
}

/** A plain-text table: the first column (and those in `left`) left-aligned, the others (numbers) right-aligned. */
export const formatTable = (
  header: ReadonlyArray<string>,
  cells: ReadonlyArray<ReadonlyArray<string>>,
  left: ReadonlyArray<number> = [0]
): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)))
  const line = (c: ReadonlyArray<string>) =>
    c.map((v, i) => left.includes(i) ? v.padEnd(widths[i]) : v.padStart(widths[i])).join("  ").trimEnd()
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...cells.map(line)].join("\n")
}
