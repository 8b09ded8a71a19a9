/**
 * The pure parts of `bench soak`: its `--duration` text, the counts of one
 * minute (a fresh HdrHistogram each, latency from the intended send time), the
 * record kept per minute, the targets checked at the end, and the SVG chart
 * drawn from the records.
 */
import type { Histogram } from "hdr-histogram-js"
import type { CpuPerRequest } from "./CpuUsage.ts"
import type { Failure } from "./LoadReport.ts"
import { newHistogram, P99_TARGET_MS, quantileMs, quantileOfDueMs } from "./LoadReport.ts"

/** `1h`, `20m`, `90s`, `1h30m` or plain seconds (`600`): seconds, a positive integer. */
export const parseDuration = (text: string): number => {
  const t = text.trim().toLowerCase().replaceAll("_", "")
  const bad = () => new Error(`--duration takes seconds or 1h, 20m, 90s (e.g. 1h30m); got ${JSON.stringify(text)}`)
  if (/^\d+$/.test(t)) {
    const n = Number(t)
    if (n <= 0) throw bad()
    return n
  }
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(t)
  if (t === "" || m === null) throw bad()
  const seconds = Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0)
  if (seconds <= 0) throw bad()
  return seconds
}

/** The counts of the requests due in one minute (answers count in the minute they were due in). */
export class MinuteStats {
  /** Latency of 2xx answers from the intended send time, µs. */
  readonly latency: Histogram = newHistogram()
  /** How late the generator sent each request after it was due, µs: its own lag on a busy machine. */
  readonly sendLag: Histogram = newHistogram()
  due = 0
  ok = 0
  inFlight = 0
  readonly errors = new Map<string, number>()
  readonly index: number
  /** The minute's length in seconds: 60, less for the last of a run that is not whole minutes. */
  readonly seconds: number
  constructor(index: number, seconds: number) {
    this.index = index
    this.seconds = seconds
  }
  private error(key: string) {
    this.errors.set(key, (this.errors.get(key) ?? 0) + 1)
  }
  recordSent(lagMs: number): void {
    this.due++
    this.inFlight++
    this.sendLag.recordValue(Math.max(0, Math.round(lagMs * 1000)))
  }
  recordDropped(): void {
    this.due++
    this.error("dropped")
  }
  recordAnswer(status: number, latencyMs: number): void {
    this.inFlight--
    if (status < 200 || status >= 300) return this.error(String(status))
    this.ok++
    this.latency.recordValue(Math.max(1, Math.round(latencyMs * 1000)))
  }
  recordFailure(failure: Exclude<Failure, "dropped">): void {
    this.inFlight--
    this.error(failure)
  }
  get errorCount(): number {
    return [...this.errors.values()].reduce((a, b) => a + b, 0)
  }
}

/** The minutes of a run of `seconds`: whole minutes, the last one shorter when it does not divide. */
export const minutesOf = (seconds: number): ReadonlyArray<number> =>
  Array.from({ length: Math.ceil(seconds / 60) }, (_, i) => Math.min(60, seconds - 60 * i))

/** The minute a request due `sinceStartMs` after the run's first one falls in. */
export const minuteAt = (sinceStartMs: number, minutes: number): number =>
  Math.min(minutes - 1, Math.max(0, Math.floor(sinceStartMs / 60_000)))

/** What the server and PostgreSQL said at the end of a minute; null where they said nothing. */
export interface ServerSample {
  readonly heapUsedBytes: number | null
  /** The heap in use just after the server's last full collection (`nodejs_heap_live_bytes`). */
  readonly liveHeapBytes: number | null
  readonly rssBytes: number | null
  readonly outboxEvents: number | null
  readonly outboxOldestAgeS: number | null
  /** Mean time from commit to Kafka's acknowledgement over the minute's published events (the server's histogram). */
  readonly kafkaDeliveryLagMs: number | null
  readonly recordsBytes: number | null
  readonly outboxBytes: number | null
}

/** One minute as written to minutes.jsonl. */
export interface MinuteRecord extends ServerSample {
  readonly minute: number
  /** Seconds since the load started, at the end of this minute (when the server was sampled). */
  readonly atS: number
  readonly seconds: number
  readonly requests: number
  readonly ok: number
  readonly errors: number
  readonly errorsBy: Record<string, number>
  readonly p99Ms: number | null
  readonly p999Ms: number | null
  /** P99 over every request due, those without a 2xx counted as slowest: what the target is checked on. */
  readonly p99AllMs: number | null
  /** P99 of how late the generator sent the minute's requests: high when the machine, not the server, was short of CPU. */
  readonly sendLagP99Ms: number | null
  /** The machine's 1-minute load average at the end of the minute. */
  readonly loadAverage: number
  /** CPU ms per request due this minute: the server process's own, and the rest of the machine's but the generator's. */
  readonly serverCpuMs: number | null
  readonly restCpuMs: number | null
}

const jsonMs = (n: number) => Number.isFinite(n) ? Math.round(n * 1000) / 1000 : null

export const minuteRecord = (
  m: MinuteStats,
  atS: number,
  sample: ServerSample,
  loadAverage: number,
  cpu: CpuPerRequest = { serverMs: undefined, restMs: undefined }
): MinuteRecord => ({
  minute: m.index + 1,
  atS,
  seconds: m.seconds,
  requests: m.due,
  ok: m.ok,
  errors: m.errorCount,
  errorsBy: Object.fromEntries(m.errors),
  p99Ms: jsonMs(quantileMs(m.latency, 0.99)),
  p999Ms: jsonMs(quantileMs(m.latency, 0.999)),
  // Infinity (more than 1 % failed) is written as null and fails the check.
  p99AllMs: m.due === 0 ? null : jsonMs(quantileOfDueMs(m.latency, m.due, 0.99)),
  sendLagP99Ms: m.due === 0 ? null : jsonMs(quantileMs(m.sendLag, 0.99)),
  loadAverage: Math.round(loadAverage * 100) / 100,
  serverCpuMs: cpu.serverMs === undefined ? null : jsonMs(cpu.serverMs),
  restCpuMs: cpu.restMs === undefined ? null : jsonMs(cpu.restMs),
  ...sample
})

const fixed = (n: number | null, digits: number, unit = "") => n === null ? "-" : `${n.toFixed(digits)}${unit}`
const mib = (bytes: number | null) => bytes === null ? "-" : `${(bytes / 2 ** 20).toFixed(1)} MiB`

/** The line printed as each minute ends. */
export const minuteLine = (r: MinuteRecord): string =>
  `minute ${r.minute} (+${r.atS} s): ${r.requests} requests (${
    (r.requests / r.seconds).toFixed(0)
  }/s), ${r.errors} errors${r.errors > 0 ? ` ${JSON.stringify(r.errorsBy)}` : ""}; p99 ${fixed(r.p99Ms, 1)} ms, p99.9 ${
    fixed(r.p999Ms, 1)
  } ms, p99 all ${r.p99AllMs === null && r.requests > 0 ? "∞" : fixed(r.p99AllMs, 1)} ms; heap ${
    mib(r.heapUsedBytes)
  } (live ${mib(r.liveHeapBytes)}), rss ${mib(r.rssBytes)}; outbox ${r.outboxEvents ?? "-"} events (oldest ${
    fixed(r.outboxOldestAgeS, 1, " s")
  }), event delivery lag ${fixed(r.kafkaDeliveryLagMs, 1, " ms")}; records ${mib(r.recordsBytes)}, outbox table ${
    mib(r.outboxBytes)
  }; generator send lag p99 ${fixed(r.sendLagP99Ms, 1)} ms, load average ${
    r.loadAverage.toFixed(2)
  }; cpu per request: server ${fixed(r.serverCpuMs, 3, " ms")}, rest ${fixed(r.restCpuMs, 3, " ms")}`

export const MINUTE_TABLE_HEADER = [
  "min",
  "req",
  "err",
  "p99 ms",
  "p99.9 ms",
  "heap MiB",
  "live MiB",
  "rss MiB",
  "outbox",
  "oldest s",
  "lag ms",
  "records MiB",
  "outbox MiB",
  "send lag ms",
  "load",
  "server cpu ms/req"
]

export const minuteRow = (r: MinuteRecord): ReadonlyArray<string> => [
  String(r.minute),
  String(r.requests),
  String(r.errors),
  r.p99AllMs === null && r.requests > 0 ? "∞" : fixed(r.p99AllMs, 1),
  fixed(r.p999Ms, 1),
  r.heapUsedBytes === null ? "-" : (r.heapUsedBytes / 2 ** 20).toFixed(1),
  r.liveHeapBytes === null ? "-" : (r.liveHeapBytes / 2 ** 20).toFixed(1),
  r.rssBytes === null ? "-" : (r.rssBytes / 2 ** 20).toFixed(1),
  r.outboxEvents === null ? "-" : String(r.outboxEvents),
  fixed(r.outboxOldestAgeS, 1),
  fixed(r.kafkaDeliveryLagMs, 1),
  r.recordsBytes === null ? "-" : (r.recordsBytes / 2 ** 20).toFixed(1),
  r.outboxBytes === null ? "-" : (r.outboxBytes / 2 ** 20).toFixed(1),
  fixed(r.sendLagP99Ms, 1),
  r.loadAverage.toFixed(2),
  fixed(r.serverCpuMs, 3)
]

// ---------------------------------------------------------------------------
// The targets

export interface Check {
  readonly name: string
  readonly pass: boolean
  readonly detail: string
}

/** P99 (over every request due) below the target in every minute. */
export const p99Check = (records: ReadonlyArray<MinuteRecord>): Check => {
  const over = records.filter((r) => r.requests > 0 && (r.p99AllMs === null || r.p99AllMs >= P99_TARGET_MS))
  const worst = records.reduce((w, r) => Math.max(w, r.p99AllMs ?? (r.requests > 0 ? Infinity : 0)), 0)
  return {
    name: `P99 < ${P99_TARGET_MS} ms in every minute`,
    pass: records.length > 0 && over.length === 0,
    detail: over.length === 0
      ? `worst minute ${worst === Infinity ? "∞" : worst.toFixed(1)} ms`
      : `over in minute(s) ${over.map((r) => r.minute).join(", ")}; worst ${
        worst === Infinity ? "∞ (over 1 % without a 2xx)" : `${worst.toFixed(1)} ms`
      }`
  }
}

/** Seconds of warm-up before the heap must be flat: 10 minutes, or the first sixth of a shorter run. */
export const heapWarmupSeconds = (runSeconds: number): number => Math.min(600, runSeconds / 6)

/** Allowed spread of the heap after the warm-up: (max − min) / min. */
export const HEAP_TOLERANCE = 0.1

/** The heap figure a minute is judged on: the live heap when the server reports it, else the heap in use. */
const heapOf = (r: MinuteRecord): number | null => r.liveHeapBytes ?? r.heapUsedBytes

/**
 * The heap after the warm-up flat within 10 %: over the samples taken at or
 * after the warm-up, (max − min) / min ≤ 10 % (minimum and maximum, not a
 * fit: any swing counts). The live heap (right after a full collection) when
 * the server reports it, so the collector's saw-tooth does not count; else the
 * heap in use at the sample. Fails with fewer than two such samples: nothing to compare.
 */
export const heapCheck = (records: ReadonlyArray<MinuteRecord>, runSeconds: number): Check => {
  const warmup = heapWarmupSeconds(runSeconds)
  const after = records.filter((r) => r.atS >= warmup && heapOf(r) !== null)
  const heaps = after.map((r) => heapOf(r)!)
  const live = after.length > 0 && after.every((r) => r.liveHeapBytes !== null)
  const name = `${live ? "live heap (after a full collection)" : "heap"} flat within ${HEAP_TOLERANCE * 100} % after ${
    Math.round(warmup)
  } s ((max − min) / min)`
  if (heaps.length < 2) return { name, pass: false, detail: `${heaps.length} heap sample(s) after the warm-up` }
  const min = Math.min(...heaps)
  const max = Math.max(...heaps)
  const spread = (max - min) / min
  return {
    name,
    pass: spread <= HEAP_TOLERANCE,
    detail: `${heaps.length} samples, ${(min / 2 ** 20).toFixed(1)} to ${(max / 2 ** 20).toFixed(1)} MiB: ${
      (100 * spread).toFixed(1)
    } %; linear fit ${fitText(after)}`
  }
}

/** Least-squares slope of y over x; 0 with fewer than two points. */
export const slope = (points: ReadonlyArray<readonly [number, number]>): number => {
  const n = points.length
  if (n < 2) return 0
  const mx = points.reduce((a, [x]) => a + x, 0) / n
  const my = points.reduce((a, [, y]) => a + y, 0) / n
  const sxx = points.reduce((a, [x]) => a + (x - mx) ** 2, 0)
  return sxx === 0 ? 0 : points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0) / sxx
}

/** The fit's slope for information: MiB per hour. */
const fitText = (records: ReadonlyArray<MinuteRecord>) =>
  `${(slope(records.map((r) => [r.atS / 3600, heapOf(r)! / 2 ** 20] as const))).toFixed(1)} MiB/h (information)`

export const errorsCheck = (records: ReadonlyArray<MinuteRecord>): Check => {
  const errors = records.reduce((a, r) => a + r.errors, 0)
  const by = new Map<string, number>()
  for (const r of records) for (const [k, n] of Object.entries(r.errorsBy)) by.set(k, (by.get(k) ?? 0) + n)
  return {
    name: "no errors",
    pass: errors === 0,
    detail: errors === 0
      ? `${records.reduce((a, r) => a + r.requests, 0)} requests`
      : `${errors}: ${[...by].map(([k, n]) => `${k} ${n}`).join(", ")}`
  }
}

/** The outbox after the load: its size when the wait ended (null: never read), and how long the wait took. */
export const drainCheck = (left: number | null, waitedS: number, limitS: number): Check => ({
  name: `outbox drained within ${limitS} s after the load`,
  pass: left === 0,
  detail: left === null
    ? "the outbox could not be read"
    : left === 0
    ? `empty after ${waitedS.toFixed(1)} s`
    : `${left} events left after ${waitedS.toFixed(1)} s`
})

export const checkLine = (c: Check): string => `${c.pass ? "PASS" : "FAIL"} ${c.name}: ${c.detail}`

// ---------------------------------------------------------------------------
// The chart

const esc = (s: string) => s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")

interface Panel {
  readonly title: string
  readonly unit: string
  readonly values: ReadonlyArray<number | null>
  readonly color: string
  /** A horizontal line at this value (the target). */
  readonly line?: number
}

/**
 * An SVG of P99, heap used and outbox size per minute, one panel each, on a
 * shared time axis (minutes): a polyline of one point per minute with a value,
 * and a circle at each point. Hand-written text, no dependency.
 */
export const soakSvg = (records: ReadonlyArray<MinuteRecord>, title: string): string => {
  const width = 900
  const panelHeight = 200
  const left = 80
  const right = 20
  const top = 40
  const gap = 40
  const plotWidth = width - left - right
  const panels: ReadonlyArray<Panel> = [
    {
      title: "P99 (all due) per minute",
      unit: "ms",
      values: records.map((r) => r.p99AllMs),
      color: "#c0392b",
      line: P99_TARGET_MS
    },
    {
      title: records.some((r) => r.liveHeapBytes !== null)
        ? "live heap (after the last full collection)"
        : "heap used (end of minute)",
      unit: "MiB",
      values: records.map((r) => {
        const heap = heapOf(r)
        return heap === null ? null : heap / 2 ** 20
      }),
      color: "#2471a3"
    },
    {
      title: "outbox events (end of minute)",
      unit: "events",
      values: records.map((r) => r.outboxEvents),
      color: "#1e8449"
    }
  ]
  const height = top + panels.length * (panelHeight + gap) + 20
  const maxAt = Math.max(1, ...records.map((r) => r.atS))
  const x = (atS: number) => left + (atS / maxAt) * plotWidth
  const out: Array<string> = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`
  ]
  panels.forEach((p, i) => {
    const y0 = top + i * (panelHeight + gap)
    const present = p.values.filter((v): v is number => v !== null)
    const max = Math.max(1, ...present, p.line ?? 0) * 1.1
    const y = (v: number) => y0 + panelHeight - (v / max) * panelHeight
    out.push(`<g>`)
    out.push(`<text x="${left}" y="${y0 - 6}">${esc(`${p.title}, ${p.unit}`)}</text>`)
    out.push(
      `<rect x="${left}" y="${y0}" width="${plotWidth}" height="${panelHeight}" fill="none" stroke="#999"/>`
    )
    for (const f of [0, 0.5, 1]) {
      const v = (max / 1.1) * f
      out.push(
        `<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${
          esc(v < 10 ? v.toFixed(1) : v.toFixed(0))
        }</text>`
      )
    }
    if (p.line !== undefined) {
      out.push(
        `<line x1="${left}" y1="${y(p.line).toFixed(1)}" x2="${left + plotWidth}" y2="${
          y(p.line).toFixed(1)
        }" stroke="#888" stroke-dasharray="4 4"/>`
      )
    }
    const points = records.flatMap((r, k) => {
      const v = p.values[k]
      return v === null ? [] : [[x(r.atS), y(v)] as const]
    })
    out.push(
      `<polyline fill="none" stroke="${p.color}" stroke-width="2" points="${
        points.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" ")
      }"/>`
    )
    for (const [px, py] of points) {
      out.push(`<circle cx="${px.toFixed(1)}" cy="${py.toFixed(1)}" r="3" fill="${p.color}"/>`)
    }
    out.push(`</g>`)
  })
  const axisY = top + panels.length * (panelHeight + gap) - gap + 16
  for (const r of records) {
    out.push(`<text x="${x(r.atS).toFixed(1)}" y="${axisY}" text-anchor="middle">${r.minute}</text>`)
  }
  out.push(`<text x="${left + plotWidth / 2}" y="${axisY + 18}" text-anchor="middle">minute of the run</text>`)
  out.push(`</svg>`)
  return out.join("\n") + "\n"
}
