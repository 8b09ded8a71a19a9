import { describe, expect, it } from "@effect/vitest"
import { type Clock, constantSchedule, dueAt, parseRamp, runSchedule, type Step } from "../src/LoadSchedule.ts"

/** A clock that only moves when waited on; `late` ms are added to every wait, as a busy event loop would. */
const fakeClock = (late = 0): Clock & { readonly advance: (ms: number) => void } => {
  let t = 0
  return {
    now: () => t,
    wait: async (ms) => {
      t += Math.max(0, ms) + late
    },
    advance: (ms) => {
      t += ms
    }
  }
}

interface Sent {
  readonly step: number
  readonly index: number
  readonly intended: number
  readonly at: number
}

const record = async (steps: ReadonlyArray<Step>, clock: Clock, stepSent?: (step: number) => boolean) => {
  const sent: Array<Sent> = []
  const ran = await runSchedule({
    steps,
    clock,
    send: (step, index, intended) => sent.push({ step, index, intended, at: clock.now() }),
    ...(stepSent !== undefined ? { stepSent } : {})
  })
  return { sent, ran }
}

describe("parseRamp", () => {
  it("goes from FROM to TO by STEP, each step the given seconds", () => {
    const steps = parseRamp("2000:20000:2000", 20)
    expect(steps.map((s) => s.rate)).toEqual([2000, 4000, 6000, 8000, 10000, 12000, 14000, 16000, 18000, 20000])
    expect(steps.every((s) => s.seconds === 20)).toBe(true)
    expect(parseRamp("1000:2500:1000", 5).map((s) => s.rate)).toEqual([1000, 2000])
    expect(parseRamp("500:500:100", 5).map((s) => s.rate)).toEqual([500])
  })

  it("says what is wrong with bad input", () => {
    expect(() => parseRamp("2000:1000:500", 5)).toThrow(/TO \(1000\) is below FROM \(2000\)/)
    expect(() => parseRamp("1000:2000", 5)).toThrow(/FROM:TO:STEP/)
    expect(() => parseRamp("a:2000:100", 5)).toThrow(/--ramp FROM must be a positive number/)
    expect(() => parseRamp("100:2000:0", 5)).toThrow(/--ramp STEP must be a positive number/)
  })
})

describe("runSchedule", () => {
  it("sends a constant rate evenly, each request at the time it is due", async () => {
    const { ran, sent } = await record(constantSchedule(100, 1), fakeClock())
    expect(ran).toBe(1)
    expect(sent).toHaveLength(100)
    expect(sent.map((s) => s.intended)).toEqual(Array.from({ length: 100 }, (_, i) => i * 10))
    expect(sent.every((s) => s.at === s.intended)).toBe(true)
  })

  it("runs a ramp's steps back to back, each at its own rate", async () => {
    const steps = parseRamp("10:20:10", 1)
    const { sent } = await record(steps, fakeClock())
    const first = sent.filter((s) => s.step === 0).map((s) => s.intended)
    const second = sent.filter((s) => s.step === 1).map((s) => s.intended)
    expect(first).toEqual(Array.from({ length: 10 }, (_, i) => i * 100))
    expect(second).toEqual(Array.from({ length: 20 }, (_, i) => 1000 + i * 50))
    expect(dueAt(1000, steps[1], 3)).toBe(1150)
  })

  it("does not wait for answers: a stalled one delays no later send", async () => {
    const clock = fakeClock()
    const pending: Array<Promise<void>> = []
    const sent: Array<Sent> = []
    await runSchedule({
      steps: constantSchedule(50, 2),
      clock,
      send: (step, index, intended) => {
        sent.push({ step, index, intended, at: clock.now() })
        // The first answer never comes; the others would take 300 ms each.
        pending.push(index === 0 ? new Promise<void>(() => {}) : Promise.resolve())
      }
    })
    expect(sent).toHaveLength(100)
    expect(sent.every((s) => s.at === s.intended)).toBe(true)
    expect(sent.at(-1)!.intended).toBe(1980)
  })

  it("sends what a late timer left overdue at once, each with its own due time, and none skipped", async () => {
    const { sent } = await record(constantSchedule(1000, 1), fakeClock(7))
    expect(sent).toHaveLength(1000)
    expect(sent.map((s) => s.index)).toEqual(Array.from({ length: 1000 }, (_, i) => i))
    expect(sent.map((s) => s.intended)).toEqual(Array.from({ length: 1000 }, (_, i) => i))
    // Late by at most the timer's lateness: the latency is counted from `intended`, so this lag is not hidden.
    expect(Math.max(...sent.map((s) => s.at - s.intended))).toBeLessThanOrEqual(8)
  })

  it("stops when stepSent says so", async () => {
    const seen: Array<number> = []
    const { ran, sent } = await record(parseRamp("10:40:10", 1), fakeClock(), (step) => {
      seen.push(step)
      return step < 1
    })
    expect(ran).toBe(2)
    expect(seen).toEqual([0, 1])
    expect(sent).toHaveLength(30)
  })

  it("stops sending when the signal aborts", async () => {
    const controller = new AbortController()
    const clock = fakeClock()
    let sent = 0
    await runSchedule({
      steps: constantSchedule(100, 10),
      clock,
      signal: controller.signal,
      send: () => {
        if (++sent === 10) controller.abort()
      }
    })
    expect(sent).toBe(10)
  })
})
