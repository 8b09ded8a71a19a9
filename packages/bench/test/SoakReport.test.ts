import { describe, expect, it } from "@effect/vitest"
import {
  drainCheck,
  errorsCheck,
  heapCheck,
  heapWarmupSeconds,
  minuteAt,
  type MinuteRecord,
  minuteRecord,
  minutesOf,
  MinuteStats,
  p99Check,
  parseDuration,
  type ServerSample,
  slope,
  soakSvg
} from "../src/SoakReport.ts"

const MiB = 2 ** 20

const noSample: ServerSample = {
  heapUsedBytes: null,
  liveHeapBytes: null,
  rssBytes: null,
  outboxEvents: null,
  outboxOldestAgeS: null,
  kafkaDeliveryLagMs: null,
  recordsBytes: null,
  outboxBytes: null
}

/** Minute records of a run: one per entry, heap in MiB, P99 in ms. */
const run = (minutes: ReadonlyArray<{ heap?: number; p99?: number | null; errors?: number; outbox?: number }>) =>
  minutes.map((m, i): MinuteRecord => ({
    ...noSample,
    minute: i + 1,
    atS: 60 * (i + 1),
    seconds: 60,
    requests: 1000,
    ok: 1000 - (m.errors ?? 0),
    errors: m.errors ?? 0,
    errorsBy: m.errors ? { "503": m.errors } : {},
    p99Ms: m.p99 ?? 10,
    p999Ms: 20,
    p99AllMs: m.p99 === undefined ? 10 : m.p99,
    heapUsedBytes: m.heap === undefined ? null : m.heap * MiB,
    outboxEvents: m.outbox ?? 0,
    sendLagP99Ms: 1,
    loadAverage: 1,
    serverCpuMs: null,
    restCpuMs: null
  }))

describe("parseDuration", () => {
  it("reads hours, minutes, seconds and plain seconds", () => {
    expect(parseDuration("1h")).toBe(3600)
    expect(parseDuration("20m")).toBe(1200)
    expect(parseDuration("90s")).toBe(90)
    expect(parseDuration("600")).toBe(600)
    expect(parseDuration("1h30m")).toBe(5400)
    expect(parseDuration(" 2M ")).toBe(120)
    expect(parseDuration("1_800")).toBe(1800)
  })

  it("refuses what is not a positive duration", () => {
    for (const bad of ["", "0", "0m", "-5", "1.5h", "10 min", "h", "1d", "m30"]) {
      expect(() => parseDuration(bad), bad).toThrow(/--duration/)
    }
  })
})

describe("per-minute aggregation", () => {
  it("splits a run into minutes, the last one shorter", () => {
    expect(minutesOf(600)).toEqual(Array(10).fill(60))
    expect(minutesOf(90)).toEqual([60, 30])
    expect(minutesOf(30)).toEqual([30])
    expect(minuteAt(0, 10)).toBe(0)
    expect(minuteAt(59_999, 10)).toBe(0)
    expect(minuteAt(60_000, 10)).toBe(1)
    // A request due on the last instant belongs to the last minute; rounding before the start to the first.
    expect(minuteAt(600_000, 10)).toBe(9)
    expect(minuteAt(-0.01, 10)).toBe(0)
  })

  it("counts a minute's requests, errors and percentiles from its own histogram", () => {
    const m = new MinuteStats(2, 60)
    for (let i = 1; i <= 1000; i++) {
      m.recordSent(i / 10)
      m.recordAnswer(200, i)
    }
    m.recordSent(0)
    m.recordAnswer(503, 1)
    m.recordSent(0)
    m.recordFailure("timeout")
    m.recordDropped()
    expect(m.inFlight).toBe(0)
    const r = minuteRecord(m, 180, { ...noSample, heapUsedBytes: 100 * MiB }, 1.5, { serverMs: 0.5, restMs: 0.25 })
    expect(r.minute).toBe(3)
    expect(r.atS).toBe(180)
    expect(r.requests).toBe(1003)
    expect(r.ok).toBe(1000)
    expect(r.errors).toBe(3)
    expect(r.errorsBy).toEqual({ "503": 1, timeout: 1, dropped: 1 })
    expect(Math.abs(r.p99Ms! - 990) / 990).toBeLessThan(0.001)
    expect(Math.abs(r.p999Ms! - 999) / 999).toBeLessThan(0.001)
    // Rank 993 of 1003 due is still a 2xx answer: the 993rd fastest.
    expect(Math.abs(r.p99AllMs! - 993) / 993).toBeLessThan(0.001)
    expect(r.heapUsedBytes).toBe(100 * MiB)
    // The generator's own lag: 0.1 ms to 100 ms for the answered, 0 for the rest.
    expect(Math.abs(r.sendLagP99Ms! - 98.6) / 98.6).toBeLessThan(0.01)
    expect(r.loadAverage).toBe(1.5)
    expect([r.serverCpuMs, r.restCpuMs]).toEqual([0.5, 0.25])
    // A fresh minute starts from nothing.
    expect(minuteRecord(new MinuteStats(3, 60), 240, noSample, 0).p99Ms).toBeNull()
  })

  it("writes a minute where over 1 % failed as an infinite (null) P99", () => {
    const m = new MinuteStats(0, 60)
    for (let i = 0; i < 90; i++) {
      m.recordSent(0)
      m.recordAnswer(200, 5)
    }
    for (let i = 0; i < 10; i++) {
      m.recordSent(0)
      m.recordAnswer(500, 5)
    }
    const r = minuteRecord(m, 60, noSample, 0)
    expect(r.p99AllMs).toBeNull()
    expect(p99Check([r]).pass).toBe(false)
  })
})

describe("the P99 check", () => {
  it("passes when every minute is under 500 ms and names the minutes that are not", () => {
    expect(p99Check(run([{ p99: 12 }, { p99: 499.9 }, { p99: 80 }])).pass).toBe(true)
    const failed = p99Check(run([{ p99: 12 }, { p99: 500 }, { p99: 80 }, { p99: 900 }]))
    expect(failed.pass).toBe(false)
    expect(failed.detail).toContain("minute(s) 2, 4")
    expect(failed.detail).toContain("900.0 ms")
    expect(p99Check([]).pass).toBe(false)
  })
})

describe("the heap check", () => {
  it("judges the live heap when the server reports it: the collector's saw-tooth does not count", () => {
    const records = run(Array.from({ length: 10 }, (_, i) => ({ heap: i % 2 === 0 ? 200 : 600 }))).map((r, i) => ({
      ...r,
      liveHeapBytes: (100 + (i % 3)) * MiB
    }))
    const c = heapCheck(records, 600)
    expect(c.pass, c.detail).toBe(true)
    expect(c.name).toMatch(/^live heap/)
    expect(heapCheck(records.map((r) => ({ ...r, liveHeapBytes: null })), 600).pass).toBe(false)
  })

  it("waits 10 minutes, or the first sixth of a shorter run", () => {
    expect(heapWarmupSeconds(3600)).toBe(600)
    expect(heapWarmupSeconds(7200)).toBe(600)
    expect(heapWarmupSeconds(600)).toBe(100)
  })

  it("compares the minimum and maximum after the warm-up", () => {
    // 10 minutes: warm-up 100 s, so minute 1 (at 60 s) is left out.
    const flat = run([{ heap: 50 }, ...Array.from({ length: 9 }, (_, i) => ({ heap: 100 + (i % 2) * 9.5 }))])
    const ok = heapCheck(flat, 600)
    expect(ok.pass).toBe(true)
    expect(ok.detail).toContain("9 samples")
    const growing = run(Array.from({ length: 10 }, (_, i) => ({ heap: 100 + 2 * i })))
    const grown = heapCheck(growing, 600)
    // 102 to 118 MiB after the warm-up: 15.7 %.
    expect(grown.pass).toBe(false)
    expect(grown.detail).toContain("15.7 %")
    // Within 10 % exactly passes.
    expect(heapCheck(run([{ heap: 1 }, { heap: 100 }, { heap: 110 }]), 600).pass).toBe(true)
  })

  it("fails with fewer than two samples after the warm-up", () => {
    expect(heapCheck(run([{ heap: 100 }]), 60).pass).toBe(false)
    expect(heapCheck(run([{}, {}, {}]), 180).pass).toBe(false)
  })

  it("fits a slope for information", () => {
    expect(slope([[0, 1], [1, 3], [2, 5]])).toBeCloseTo(2)
    expect(slope([[0, 1]])).toBe(0)
  })
})

describe("the errors and drain checks", () => {
  it("passes with no errors and adds them up by kind", () => {
    expect(errorsCheck(run([{}, {}])).pass).toBe(true)
    const failed = errorsCheck(run([{ errors: 2 }, {}, { errors: 3 }]))
    expect(failed.pass).toBe(false)
    expect(failed.detail).toBe("5: 503 5")
  })

  it("passes only on an empty outbox", () => {
    expect(drainCheck(0, 3.2, 60).pass).toBe(true)
    expect(drainCheck(12, 60, 60).pass).toBe(false)
    expect(drainCheck(null, 60, 60).pass).toBe(false)
  })
})

/** The tags of an XML text balance: every element opened is closed, in order. */
const wellFormed = (xml: string): boolean => {
  const open: Array<string> = []
  for (const m of xml.matchAll(/<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g)) {
    const [, closing, name, , selfClosing] = m
    if (selfClosing === "/") continue
    if (closing === "/") {
      if (open.pop() !== name) return false
    } else open.push(name)
  }
  // Nothing that looks like a tag was left unmatched by the pattern.
  const tags = xml.match(/</g)?.length ?? 0
  const matched = [...xml.matchAll(/<\/?[a-zA-Z][\w:-]*(?:\s+[\w:-]+="[^"<]*")*\s*\/?>/g)].length
  return open.length === 0 && tags === matched
}

describe("the SVG chart", () => {
  it("is a well-formed SVG with a point per minute in each panel", () => {
    const records = run(Array.from({ length: 7 }, (_, i) => ({ heap: 100 + i, p99: 20 + i, outbox: i })))
    const svg = soakSvg(records, "soak <test> & more")
    expect(svg.startsWith("<svg xmlns=\"http://www.w3.org/2000/svg\"")).toBe(true)
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true)
    expect(wellFormed(svg)).toBe(true)
    expect(svg).toContain("soak &lt;test&gt; &amp; more")
    const polylines = [...svg.matchAll(/<polyline [^>]*points="([^"]*)"/g)].map((m) => m[1].trim().split(/\s+/))
    expect(polylines).toHaveLength(3)
    for (const points of polylines) {
      expect(points).toHaveLength(7)
      for (const p of points) expect(p).toMatch(/^\d+(\.\d+)?,\d+(\.\d+)?$/)
    }
    expect([...svg.matchAll(/<circle /g)]).toHaveLength(21)
    // The shared time axis: the same x for minute k in every panel.
    const xs = polylines.map((points) => points.map((p) => p.split(",")[0]))
    expect(xs[1]).toEqual(xs[0])
    expect(xs[2]).toEqual(xs[0])
  })

  it("leaves out minutes without a value", () => {
    const records = run([{ heap: 100 }, {}, { heap: 102 }])
    const svg = soakSvg(records, "gaps")
    expect(wellFormed(svg)).toBe(true)
    const heap = [...svg.matchAll(/<polyline [^>]*points="([^"]*)"/g)][1][1].trim().split(/\s+/)
    expect(heap).toHaveLength(2)
  })
})
