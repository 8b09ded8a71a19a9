/**
 * What `bench load` counts per step and how it reads: requests sent and
 * answered, latency from each request's intended send time (HdrHistogram, in
 * microseconds, 3 significant digits), errors by status and by failure, whether
 * the step held its P99 target, the knee of a ramp, and the line of what the
 * server says of itself on `/metrics`.
 */
import { build, type Histogram } from "hdr-histogram-js"
import type { CpuPerRequest } from "./CpuUsage.ts"
import type { Kind } from "./LoadMix.ts"
import type { Step } from "./LoadSchedule.ts"
import { count, formatTable } from "./Measure.ts"

/** The target a step holds or not: P99 below this, counting every request that got no 2xx as slower. */
export const P99_TARGET_MS = 500

/** Failures that are not an HTTP status. */
export type Failure = "timeout" | "connection" | "dropped"

export const newHistogram = (): Histogram =>
  build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 })

/** One step's counts. Answers arrive after the step's time ends; they are counted in the step they were due in. */
export class StepStats {
  /** Latency of 2xx answers from the intended send time, µs. */
  readonly latency: Histogram = newHistogram()
  /** How late the generator sent each request after it was due, µs: its own lag, not the server's. */
  readonly sendLag: Histogram = newHistogram()
  sent = 0
  answered = 0
  ok = 0
  /** 2xx answers at or above P99_TARGET_MS. */
  slow = 0
  inFlight = 0
  /** Errors by HTTP status (non-2xx) or failure. */
  readonly errors = new Map<string, number>()
  readonly kinds = new Map<Kind, { sent: number; ok: number; hits: number }>()
  /** CPU per request over the step, when the server is one of the bench's own. */
  cpu: CpuPerRequest = { serverMs: undefined, restMs: undefined }
  readonly index: number
  readonly step: Step
  constructor(index: number, step: Step) {
    this.index = index
    this.step = step
  }

  private kind(kind: Kind) {
    let k = this.kinds.get(kind)
    if (k === undefined) this.kinds.set(kind, k = { sent: 0, ok: 0, hits: 0 })
    return k
  }
  private error(key: string) {
    this.errors.set(key, (this.errors.get(key) ?? 0) + 1)
  }

  /** A request was sent `lagMs` after it was due. */
  recordSent(kind: Kind, lagMs: number): void {
    this.sent++
    this.inFlight++
    this.kind(kind).sent++
    this.sendLag.recordValue(Math.max(0, Math.round(lagMs * 1000)))
  }
  /** A request was due while `--max-in-flight` were: not sent, an error. */
  recordDropped(): void {
    this.error("dropped")
  }
  recordAnswer(kind: Kind, status: number, latencyMs: number, cacheHit: boolean): void {
    this.inFlight--
    this.answered++
    if (status < 200 || status >= 300) return this.error(String(status))
    this.ok++
    const k = this.kind(kind)
    k.ok++
    if (cacheHit) k.hits++
    if (latencyMs >= P99_TARGET_MS) this.slow++
    this.latency.recordValue(Math.max(1, Math.round(latencyMs * 1000)))
  }
  recordFailure(failure: Exclude<Failure, "dropped">): void {
    this.inFlight--
    this.error(failure)
  }

  /** Requests the schedule made due in this step: sent or dropped. */
  get due(): number {
    return this.sent + (this.errors.get("dropped") ?? 0)
  }
  get errorCount(): number {
    return [...this.errors.values()].reduce((a, b) => a + b, 0)
  }
}

/** The p-quantile (0..1) of the histogram in ms; NaN when it is empty. */
export const quantileMs = (h: Histogram, p: number): number =>
  h.totalCount === 0 ? Number.NaN : (p >= 1 ? h.maxValue : h.getValueAtPercentile(100 * p)) / 1000

/**
 * The p-quantile in ms over every request due, those without a 2xx answer
 * counted as slower than any answer: Infinity when more than (1 − p) of them
 * got none, else the 2xx latency at the same rank. This is the figure a step
 * holds its target on, so a server cannot pass by answering fast errors.
 */
export const quantileOfDueMs = (h: Histogram, due: number, p: number): number => {
  if (due === 0) return Number.NaN
  const rank = Math.max(1, Math.ceil(p * due))
  if (rank > h.totalCount) return Infinity
  return quantileMs(h, rank / h.totalCount)
}

/** The step held: P99 over its due requests (failures as slowest) below the target. */
export const held = (s: StepStats): boolean => {
  const p99 = quantileOfDueMs(s.latency, s.due, 0.99)
  return p99 < P99_TARGET_MS
}

/**
 * Whether a step still sending looks failed: more than 1 % of its requests so
 * far failed or answered at or above the target. A ramp stops after two such steps.
 */
export const failingSoFar = (s: StepStats): boolean => s.due > 0 && (s.errorCount + s.slow) / s.due > 0.01

/** The highest rate among the steps that held; undefined when none did. */
export const knee = (steps: ReadonlyArray<StepStats>): number | undefined =>
  steps.reduce<number | undefined>(
    (best, s) => held(s) && (best === undefined || s.step.rate > best) ? s.step.rate : best,
    undefined
  )

const ms = (n: number) => Number.isNaN(n) ? "-" : n === Infinity ? "∞" : n < 10 ? n.toFixed(2) : n.toFixed(1)

const cpuMs = (n: number | undefined) => n === undefined ? "-" : n.toFixed(3)

const errorText = (s: StepStats) =>
  s.errors.size === 0
    ? "none"
    : [...s.errors].toSorted(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k}: ${count(n)}`).join(", ")

/** The table of every step: one row each. */
export const stepTable = (steps: ReadonlyArray<StepStats>): string =>
  formatTable(
    [
      "step",
      "rate/s",
      "s",
      "sent",
      "answered",
      "2xx/s",
      "p50 ms",
      "p90 ms",
      "p99 ms",
      "p99.9 ms",
      "max ms",
      "p99 all ms",
      "held",
      "send lag p99 ms",
      "server cpu ms/req",
      "rest cpu ms/req",
      "errors"
    ],
    steps.map((s) => [
      String(s.index + 1),
      count(s.step.rate),
      String(s.step.seconds),
      count(s.sent),
      count(s.answered),
      count(Math.round(s.ok / s.step.seconds)),
      ...[0.5, 0.9, 0.99, 0.999, 1].map((p) => ms(quantileMs(s.latency, p))),
      ms(quantileOfDueMs(s.latency, s.due, 0.99)),
      held(s) ? "yes" : "no",
      ms(quantileMs(s.sendLag, 0.99)),
      cpuMs(s.cpu.serverMs),
      cpuMs(s.cpu.restMs),
      errorText(s)
    ]),
    [0, 12, 16]
  )

/** One step as a line, printed when all its requests are settled. */
export const stepLine = (s: StepStats): string =>
  `step ${s.index + 1}: ${count(s.step.rate)}/s for ${s.step.seconds} s: sent ${count(s.sent)}, answered ${
    count(s.answered)
  } (2xx ${count(s.ok)}); p50 ${ms(quantileMs(s.latency, 0.5))} p90 ${ms(quantileMs(s.latency, 0.9))} p99 ${
    ms(quantileMs(s.latency, 0.99))
  } p99.9 ${ms(quantileMs(s.latency, 0.999))} max ${ms(quantileMs(s.latency, 1))} ms; p99 of all due ${
    ms(quantileOfDueMs(s.latency, s.due, 0.99))
  } ms: ${held(s) ? "held" : "not held"} (< ${P99_TARGET_MS} ms); errors ${errorText(s)}; send lag p99 ${
    ms(quantileMs(s.sendLag, 0.99))
  } ms; cpu per request: server ${cpuMs(s.cpu.serverMs)} ms, rest of the machine ${cpuMs(s.cpu.restMs)} ms`

const jsonMs = (n: number) => Number.isFinite(n) ? Math.round(n * 1000) / 1000 : null

/** One step as JSON (`--json`): latencies in ms, null where there is none or it is infinite. */
export const stepJson = (s: StepStats) => ({
  step: s.index + 1,
  rate: s.step.rate,
  seconds: s.step.seconds,
  due: s.due,
  sent: s.sent,
  answered: s.answered,
  ok: s.ok,
  latencyMs: {
    p50: jsonMs(quantileMs(s.latency, 0.5)),
    p90: jsonMs(quantileMs(s.latency, 0.9)),
    p99: jsonMs(quantileMs(s.latency, 0.99)),
    p99_9: jsonMs(quantileMs(s.latency, 0.999)),
    max: jsonMs(quantileMs(s.latency, 1))
  },
  p99OfDueMs: jsonMs(quantileOfDueMs(s.latency, s.due, 0.99)),
  held: held(s),
  errors: Object.fromEntries(s.errors),
  sendLagMs: { p99: jsonMs(quantileMs(s.sendLag, 0.99)), max: jsonMs(quantileMs(s.sendLag, 1)) },
  cpuMsPerRequest: { server: s.cpu.serverMs ?? null, rest: s.cpu.restMs ?? null },
  kinds: Object.fromEntries(s.kinds)
})

// ---------------------------------------------------------------------------
// The server's own view, from /metrics

/** A sample's value: the first line of `name` whose labels include `labels`; undefined when absent. */
export const metricValue = (text: string, name: string, labels: string = ""): number | undefined => {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue
    const rest = line.slice(name.length)
    const m = /^(?:\{([^}]*)\})?\s+(\S+)/.exec(rest)
    if (m === null || (labels !== "" && !(m[1] ?? "").includes(labels))) continue
    return Number(m[2])
  }
  return undefined
}

const mib = (bytes: number | undefined) => bytes === undefined ? "-" : `${(bytes / 2 ** 20).toFixed(0)} MiB`
const secondsAsMs = (s: number | undefined) => s === undefined ? "-" : `${(s * 1000).toFixed(1)} ms`
const plain = (n: number | undefined) => n === undefined ? "-" : count(n)

/** What the server says of itself: event-loop delay, heap, outbox, database pool. */
export const serverLine = (text: string): string =>
  [
    `event loop p99 ${secondsAsMs(metricValue(text, "nodejs_eventloop_delay_p99_seconds"))}` +
    ` (max ${secondsAsMs(metricValue(text, "nodejs_eventloop_delay_max_seconds"))})`,
    `heap used ${mib(metricValue(text, "nodejs_heap_used_bytes"))}`,
    `rss ${mib(metricValue(text, "process_resident_memory_bytes"))}`,
    `outbox ${plain(metricValue(text, "strata_outbox_events"))} events` +
    ` (oldest ${secondsAsMs(metricValue(text, "strata_outbox_oldest_event_age_seconds"))})`,
    `db pool waiting ${plain(metricValue(text, "strata_db_pool_waiting"))}, active ${
      plain(metricValue(text, "strata_db_pool_connections", `state="active"`))
    }/${plain(metricValue(text, "strata_db_pool_max_connections"))}`
  ].join("; ")
