/**
 * How `bench chaos` reads a run: each answer falls in the window of the fault
 * it was in flight during (or in the steady stretches between faults), and each window
 * gets its row (requests, 2xx, 503, other, lost, recovery) and its checks,
 * PASS or FAIL. Pure: the driver (Chaos.ts) hands it what happened.
 */
import type { Kind } from "./LoadMix.ts"
import type { Failure } from "./LoadReport.ts"
import { count, formatTable } from "./Measure.ts"

/** One request of the run; times in ms on the run's clock. */
export interface Answer {
  readonly kind: Kind
  /** When the schedule had it due. */
  readonly due: number
  /** When the generator sent it (after `due` when the generator was late). */
  readonly sent: number
  /** When its answer (or failure) came. */
  readonly done: number
  /** The HTTP status, or 0 when there was none. */
  readonly status: number
  readonly failure?: Exclude<Failure, "dropped">
}

/** What a fault's run looked like: when it was injected, when healing began, when it looked over. */
export interface FaultRun {
  readonly fault: string
  readonly injectedAt: number
  /** When taking the fault away began: a process started again, SIGCONT sent, forwarding resumed. */
  readonly healStartedAt: number
  /** When that was done: the dependency back (a restarted one answering), the killed process ready. */
  readonly healedAt: number
  /** The fault's own sign of health (a broker's events delivered, a process ready), when it came. */
  readonly readyAt: number | undefined
  /** The end of its window: when it had looked recovered for a while, or the limit. */
  readonly endedAt: number
  readonly recovered: boolean
}

/** Which promises a fault is held to (README: Endurance, chaos under load). */
export interface Expectations {
  /** Reads of cached records keep answering 2xx while it is held (at least 99 %). */
  readonly cachedReadsServe: boolean
  /** Not one 5xx (503 included) in its window. */
  readonly no5xx: boolean
  /** Every write in its window answered 2xx. */
  readonly writesUnaffected: boolean
  /** Every request that got an answer got a 2xx: only lost connections failed (a killed process's requests in flight). */
  readonly onlyConnectionsLost: boolean
}

export interface Check {
  readonly name: string
  readonly pass: boolean
  readonly detail: string
}

const ok = (a: Answer) => a.status >= 200 && a.status < 300
const isWrite = (kind: Kind) => kind === "post" || kind === "batch"

export interface Row {
  readonly window: string
  readonly requests: number
  readonly ok: number
  readonly unavailable: number
  readonly other: number
  readonly lost: number
  /** Seconds from the dependency's return to the last failed request due after it, or to the fault's own sign of health. */
  readonly recoveryS: number | undefined
  readonly recovered: boolean
  /** The slowest answer of the window, from when it was sent, ms. */
  readonly slowestMs: number
}

/** Of the answers in flight at some time in [from, to): due before its end, answered after its start. */
const within = (answers: ReadonlyArray<Answer>, from: number, to: number) =>
  answers.filter((a) => a.due < to && a.done >= from)

/**
 * Seconds from the dependency's return (healing done) to the later of the last
 * failure due after it and the fault's own sign of health: Strata's own part.
 */
export const recoveryOf = (answers: ReadonlyArray<Answer>, run: FaultRun): number => {
  let last = run.healedAt
  for (const a of answers) {
    if (a.due >= run.healedAt && a.due < run.endedAt && !ok(a)) last = Math.max(last, a.due)
  }
  if (run.readyAt !== undefined) last = Math.max(last, run.readyAt)
  return (last - run.healedAt) / 1000
}

const rowOf = (
  window: string,
  answers: ReadonlyArray<Answer>,
  lost: number,
  run: FaultRun | undefined,
  all: ReadonlyArray<Answer>
): Row => ({
  window,
  requests: answers.length,
  ok: answers.filter(ok).length,
  unavailable: answers.filter((a) => a.status === 503).length,
  other: answers.filter((a) => !ok(a) && a.status !== 503).length,
  lost,
  recoveryS: run === undefined ? undefined : recoveryOf(all, run),
  recovered: run?.recovered ?? true,
  slowestMs: answers.reduce((m, a) => Math.max(m, a.done - a.sent), 0)
})

/**
 * The rows: one per fault (the requests in flight from its injection to the
 * end of its window) and one for the rest, the steady stretches. `lostAt` are
 * the due times of acknowledged writes found missing at the end.
 */
export const rowsOf = (
  answers: ReadonlyArray<Answer>,
  runs: ReadonlyArray<FaultRun>,
  lostAt: ReadonlyArray<number>
): ReadonlyArray<Row> => {
  const inFault = (t: number) => runs.some((r) => t >= r.injectedAt && t < r.endedAt)
  const steady = answers.filter((a) => !runs.some((r) => a.due < r.endedAt && a.done >= r.injectedAt))
  return [
    rowOf("steady (no fault)", steady, lostAt.filter((t) => !inFault(t)).length, undefined, answers),
    ...runs.map((r) =>
      rowOf(
        r.fault,
        within(answers, r.injectedAt, r.endedAt),
        lostAt.filter((t) => t >= r.injectedAt && t < r.endedAt).length,
        r,
        answers
      )
    )
  ]
}

export const TABLE_HEADER = ["fault", "requests", "2xx", "503", "other", "lost", "recovery s", "slowest ms"]

export const chaosTable = (rows: ReadonlyArray<Row>): string =>
  formatTable(
    TABLE_HEADER,
    rows.map((r) => [
      r.window,
      count(r.requests),
      count(r.ok),
      count(r.unavailable),
      count(r.other),
      count(r.lost),
      r.recoveryS === undefined ? "" : r.recovered ? r.recoveryS.toFixed(1) : `> ${r.recoveryS.toFixed(0)}`,
      count(Math.round(r.slowestMs))
    ])
  )

/** What failed in a set of answers, `503 ×12, connection ×3`, for a check's detail. */
export const failuresOf = (answers: ReadonlyArray<Answer>): string => {
  const by = new Map<string, number>()
  for (const a of answers) {
    if (ok(a)) continue
    const key = a.status === 0 ? (a.failure ?? "no answer") : String(a.status)
    by.set(key, (by.get(key) ?? 0) + 1)
  }
  return by.size === 0 ? "none" : [...by].map(([k, n]) => `${k} ×${count(n)}`).join(", ")
}

/**
 * A fault's checks: nothing lost, no 500, no answer slower than the request
 * deadline (plus a second for the way back), recovered within the limit, and
 * what the fault's expectations add.
 */
export const faultChecks = (
  run: FaultRun,
  row: Row,
  answers: ReadonlyArray<Answer>,
  expect: Expectations,
  options: { readonly requestTimeoutMs: number; readonly recoverLimitS: number }
): ReadonlyArray<Check> => {
  const mine = within(answers, run.injectedAt, run.endedAt)
  const held = within(answers, run.injectedAt, run.healStartedAt)
  const checks: Array<Check> = [
    { name: "nothing lost", pass: row.lost === 0, detail: `${count(row.lost)} acknowledged writes missing` },
    {
      name: "no 500",
      pass: mine.every((a) => a.status < 500 || a.status === 503),
      detail: failuresOf(mine.filter((a) => a.status >= 500 && a.status !== 503))
    },
    {
      name: `no answer past REQUEST_TIMEOUT (${options.requestTimeoutMs / 1000} s + 1 s)`,
      pass: row.slowestMs <= options.requestTimeoutMs + 1_000 && mine.every((a) => a.failure !== "timeout"),
      detail: `slowest ${count(Math.round(row.slowestMs))} ms; ${
        count(mine.filter((a) => a.failure === "timeout").length)
      } timed out`
    },
    {
      name: `recovered within ${options.recoverLimitS} s`,
      pass: run.recovered,
      detail: `${
        run.recovered ? `${row.recoveryS?.toFixed(1)} s after healing was done` : "still failing at the limit"
      }; healing took ${((run.healedAt - run.healStartedAt) / 1000).toFixed(1)} s`
    }
  ]
  if (expect.cachedReadsServe) {
    const reads = held.filter((a) => a.kind === "get-hot")
    const served = reads.filter(ok).length
    checks.push({
      name: "cached reads keep answering",
      pass: served >= 0.99 * reads.length,
      detail: reads.length === 0 ? "none in the mix" : `${count(served)} of ${count(reads.length)} 2xx while held`
    })
  }
  if (expect.no5xx) {
    const bad = mine.filter((a) => a.status >= 500)
    checks.push({ name: "no 5xx", pass: bad.length === 0, detail: failuresOf(bad) })
  }
  if (expect.onlyConnectionsLost) {
    const bad = mine.filter((a) => !ok(a) && a.failure !== "connection")
    checks.push({
      name: "every answer a 2xx (only connections lost)",
      pass: bad.length === 0,
      detail: `${count(mine.filter((a) => a.failure === "connection").length)} connections lost; other failures: ${
        failuresOf(bad)
      }`
    })
  }
  if (expect.writesUnaffected) {
    const writes = mine.filter((a) => isWrite(a.kind))
    const failed = writes.filter((a) => !ok(a))
    checks.push({
      name: "writes unaffected",
      pass: failed.length === 0,
      detail: `${count(writes.length - failed.length)} of ${count(writes.length)} 2xx; failed: ${failuresOf(failed)}`
    })
  }
  return checks
}

export const checkLine = (fault: string, c: Check): string =>
  `${c.pass ? "PASS" : "FAIL"} ${fault}: ${c.name} (${c.detail})`
