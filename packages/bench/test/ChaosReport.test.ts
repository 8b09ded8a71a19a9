/**
 * How `bench chaos` reads a run: which window a request counts in, the
 * recovery time, the row's counts and each fault's checks.
 */
import { describe, expect, it } from "@effect/vitest"
import { type Answer, chaosTable, faultChecks, type FaultRun, recoveryOf, rowsOf } from "../src/ChaosReport.ts"

const answer = (due: number, status: number, extra: Partial<Answer> = {}): Answer => ({
  kind: "post",
  due,
  sent: due,
  done: due + 10,
  status,
  ...extra
})

/** A fault injected at 10 s, healed from 20 s, over at 30 s. */
const run: FaultRun = {
  fault: "pg-stop",
  injectedAt: 10_000,
  healStartedAt: 19_000,
  healedAt: 20_000,
  readyAt: undefined,
  endedAt: 30_000,
  recovered: true
}
const options = { requestTimeoutMs: 10_000, recoverLimitS: 30 }
const databaseDown = { cachedReadsServe: true, no5xx: false, writesUnaffected: false, onlyConnectionsLost: false }

describe("rowsOf", () => {
  it("counts a request in the fault it was in flight during, even one due just before the injection", () => {
    const answers = [
      answer(5_000, 201),
      answer(9_900, 503, { done: 14_900 }), // due before, answered during: the fault's
      answer(12_000, 503),
      answer(25_000, 201),
      answer(35_000, 201)
    ]
    const [steady, fault] = rowsOf(answers, [run], [])
    expect(steady).toMatchObject({ requests: 2, ok: 2, unavailable: 0, other: 0 })
    expect(fault).toMatchObject({ window: "pg-stop", requests: 3, ok: 1, unavailable: 2, other: 0, lost: 0 })
  })

  it("counts failures without a status and other statuses as other, and lost writes by their due time", () => {
    const answers = [answer(11_000, 0, { failure: "connection" }), answer(12_000, 500), answer(13_000, 201)]
    const [steady, fault] = rowsOf(answers, [run], [13_000, 40_000])
    expect(fault).toMatchObject({ requests: 3, ok: 1, unavailable: 0, other: 2, lost: 1 })
    expect(steady.lost).toBe(1)
  })
})

describe("recoveryOf", () => {
  it("runs from the healing to the last failure due after it", () => {
    expect(recoveryOf([answer(12_000, 503), answer(23_500, 503), answer(24_000, 201)], run)).toBe(3.5)
  })

  it("is 0 when nothing failed after the healing, and the fault's own sign of health counts when later", () => {
    expect(recoveryOf([answer(15_000, 503)], run)).toBe(0)
    expect(recoveryOf([answer(15_000, 503)], { ...run, readyAt: 27_000 })).toBe(7)
  })
})

describe("faultChecks", () => {
  const checks = (answers: ReadonlyArray<Answer>, lost: ReadonlyArray<number> = [], r: FaultRun = run) => {
    const rows = rowsOf(answers, [r], lost)
    return Object.fromEntries(faultChecks(r, rows[1], answers, databaseDown, options).map((c) => [c.name, c.pass]))
  }
  const hot = (due: number, status: number) => answer(due, status, { kind: "get-hot" })

  it("passes an outage answered with fast 503s while cached reads serve", () => {
    expect(Object.values(checks([answer(12_000, 503), hot(12_500, 200), answer(25_000, 201)])).every(Boolean))
      .toBe(true)
  })

  it("fails on a 500, a lost write, an answer slower than the deadline, or a cached read turned away", () => {
    const failed = checks(
      [answer(12_000, 500), hot(12_500, 503), hot(13_000, 200), answer(14_000, 503, { done: 26_000 })],
      [15_000]
    )
    expect(failed).toMatchObject({
      "nothing lost": false,
      "no 500": false,
      "no answer past REQUEST_TIMEOUT (10 s + 1 s)": false,
      "cached reads keep answering": false
    })
  })

  it("fails a fault still failing at the limit", () => {
    expect(checks([answer(29_000, 503)], [], { ...run, recovered: false })["recovered within 30 s"]).toBe(false)
  })
})

describe("chaosTable", () => {
  it("prints a row per window, with > for a fault that did not recover", () => {
    const table = chaosTable(rowsOf([answer(12_000, 503)], [{ ...run, recovered: false }], []))
    const lines = table.split("\n")
    expect(lines[0]).toMatch(/^fault\s+requests\s+2xx\s+503\s+other\s+lost\s+recovery s\s+slowest ms$/)
    expect(lines[3]).toMatch(/^pg-stop\s+1\s+0\s+1\s+0\s+0\s+> 0\s+10$/)
  })
})

describe("a killed process's checks", () => {
  it("allows lost connections but no other failure", () => {
    const killed = { cachedReadsServe: false, no5xx: true, writesUnaffected: false, onlyConnectionsLost: true }
    const checksOf = (answers: ReadonlyArray<Answer>) => {
      const rows = rowsOf(answers, [run], [])
      return Object.fromEntries(faultChecks(run, rows[1], answers, killed, options).map((c) => [c.name, c.pass]))
    }
    const lost = checksOf([answer(12_000, 0, { failure: "connection" }), answer(12_100, 201)])
    expect(lost["every answer a 2xx (only connections lost)"]).toBe(true)
    const refused = checksOf([answer(12_000, 0, { failure: "connection" }), answer(12_100, 429)])
    expect(refused["every answer a 2xx (only connections lost)"]).toBe(false)
  })
})
