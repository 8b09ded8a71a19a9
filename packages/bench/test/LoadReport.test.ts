import { describe, expect, it } from "@effect/vitest"
import {
  failingSoFar,
  held,
  knee,
  metricValue,
  quantileMs,
  quantileOfDueMs,
  serverLine,
  stepJson,
  StepStats
} from "../src/LoadReport.ts"

/** A step whose 2xx answers took these ms, with `failures` more requests answered 503. */
const stepWith = (rate: number, latencies: ReadonlyArray<number>, failures = 0): StepStats => {
  const s = new StepStats(0, { rate, seconds: 1 })
  for (const ms of latencies) {
    s.recordSent("get-hot", 0)
    s.recordAnswer("get-hot", 200, ms, true)
  }
  for (let i = 0; i < failures; i++) {
    s.recordSent("post", 0)
    s.recordAnswer("post", 503, 1, false)
  }
  return s
}

const oneToThousand = Array.from({ length: 1000 }, (_, i) => i + 1)

describe("percentiles", () => {
  it("reads a known histogram within its 3 significant digits", () => {
    const s = stepWith(1000, oneToThousand)
    const near = (actual: number, expected: number) =>
      expect(Math.abs(actual - expected) / expected).toBeLessThan(0.001)
    near(quantileMs(s.latency, 0.5), 500)
    near(quantileMs(s.latency, 0.9), 900)
    near(quantileMs(s.latency, 0.99), 990)
    near(quantileMs(s.latency, 0.999), 999)
    expect(quantileMs(s.latency, 1)).toBe(1000)
    expect(s.slow).toBe(501)
    expect(Number.isNaN(quantileMs(new StepStats(0, { rate: 1, seconds: 1 }).latency, 0.5))).toBe(true)
  })

  it("counts requests without a 2xx as slowest in the P99 over all due", () => {
    const hundred = stepWith(100, Array.from({ length: 100 }, (_, i) => i + 1))
    // The 99th of 100 answers, within the histogram's resolution.
    expect(quantileOfDueMs(hundred.latency, 100, 0.99)).toBeCloseTo(99, 1)
    // One failure among 101: rank 100 is still an answer, the slowest.
    expect(quantileOfDueMs(hundred.latency, 101, 0.99)).toBe(100)
    // Two among 102: rank 101 is a failure.
    expect(quantileOfDueMs(hundred.latency, 102, 0.99)).toBe(Infinity)
    expect(Number.isNaN(quantileOfDueMs(hundred.latency, 0, 0.99))).toBe(true)
  })
})

describe("held and knee", () => {
  it("holds when P99 over all due stays under 500 ms", () => {
    expect(held(stepWith(1000, Array(1000).fill(10), 5))).toBe(true)
    // 20 fast 503s in 1020: over 1 % got no 2xx.
    const shed = stepWith(1000, Array(1000).fill(10), 20)
    expect(quantileMs(shed.latency, 0.99)).toBeLessThan(11)
    expect(held(shed)).toBe(false)
    expect(held(stepWith(1000, [...Array(980).fill(10), ...Array(20).fill(600)]))).toBe(false)
  })

  it("counts dropped requests as due and failed", () => {
    const s = stepWith(1000, Array(100).fill(10))
    for (let i = 0; i < 2; i++) s.recordDropped()
    expect(s.due).toBe(102)
    expect(s.errors.get("dropped")).toBe(2)
    expect(held(s)).toBe(false)
    expect(failingSoFar(s)).toBe(true)
  })

  it("is the highest rate that held", () => {
    const steps = [
      stepWith(1000, [5]),
      stepWith(2000, [50]),
      stepWith(3000, [700]),
      stepWith(4000, [400]),
      stepWith(5000, [5], 3)
    ]
    expect(knee(steps)).toBe(4000)
    expect(knee([stepWith(1000, [900])])).toBeUndefined()
  })

  it("reports a step as JSON, infinite and missing latencies as null", () => {
    const json = stepJson(stepWith(100, [1, 2, 3], 2))
    expect(json).toMatchObject({ rate: 100, due: 5, sent: 5, answered: 5, ok: 3, held: false, errors: { "503": 2 } })
    expect(json.p99OfDueMs).toBeNull()
    expect(json.latencyMs.max).toBe(3)
  })
})

describe("the server's metrics", () => {
  const text = [
    "# HELP nodejs_eventloop_delay_p99_seconds 99th percentile",
    "# TYPE nodejs_eventloop_delay_p99_seconds gauge",
    "nodejs_eventloop_delay_p99_seconds 0.0123",
    "nodejs_eventloop_delay_max_seconds 0.05",
    "nodejs_heap_used_bytes 104857600",
    "process_resident_memory_bytes 314572800",
    "strata_outbox_events 42",
    "strata_outbox_oldest_event_age_seconds 0.5",
    "strata_db_pool_waiting 3",
    "strata_db_pool_connections{state=\"idle\"} 2",
    "strata_db_pool_connections{state=\"active\"} 8",
    "strata_db_pool_max_connections 10"
  ].join("\n")

  it("reads samples by name and labels", () => {
    expect(metricValue(text, "strata_db_pool_connections", `state="active"`)).toBe(8)
    expect(metricValue(text, "strata_outbox_events")).toBe(42)
    // A name that is a prefix of another is not mistaken for it.
    expect(metricValue(text, "strata_outbox")).toBeUndefined()
    expect(metricValue(text, "strata_missing")).toBeUndefined()
  })

  it("says it in one line", () => {
    expect(serverLine(text)).toBe(
      "event loop p99 12.3 ms (max 50.0 ms); heap used 100 MiB; rss 300 MiB; outbox 42 events (oldest 500.0 ms); " +
        "db pool waiting 3, active 8/10"
    )
    expect(serverLine("")).toContain("event loop p99 - (max -)")
  })
})
