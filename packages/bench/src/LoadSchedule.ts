/**
 * When `bench load` sends each request: a fixed schedule, decided before the
 * run and never by the answers (an open loop). Request i of a step at rate r is
 * due i/r seconds after the step starts; the driver sends every request that is
 * due and never waits for an answer, so a slow answer delays nothing after it
 * and is measured from when it was due (no coordinated omission).
 *
 * Pure apart from the clock it is given, so tests drive it with a fake one.
 */

/** One stretch of constant arrival rate. */
export interface Step {
  /** Requests per second. */
  readonly rate: number
  readonly seconds: number
}

/** Requests a step sends: its rate times its length, rounded. */
export const stepRequests = (step: Step): number => Math.round(step.rate * step.seconds)

/** When request `index` of a step that started at `start` (ms) is due, in ms. */
export const dueAt = (start: number, step: Step, index: number): number => start + (index * 1000) / step.rate

const positive = (what: string, text: string): number => {
  const n = Number(text.replaceAll("_", ""))
  if (text.trim() === "" || !Number.isFinite(n) || n <= 0) {
    throw new Error(`${what} must be a positive number; got ${JSON.stringify(text)}`)
  }
  return n
}

/** `--rate N --duration S`: one step. */
export const constantSchedule = (rate: number, seconds: number): ReadonlyArray<Step> => [{ rate, seconds }]

/**
 * `--ramp FROM:TO:STEP`: FROM, FROM+STEP, … up to TO (included when the steps
 * land on it), `seconds` each.
 */
export const parseRamp = (text: string, seconds: number): ReadonlyArray<Step> => {
  const parts = text.split(":")
  if (parts.length !== 3) throw new Error(`--ramp takes FROM:TO:STEP (requests/s), e.g. 2000:20000:2000; got ${text}`)
  const [from, to, step] = [
    positive("--ramp FROM", parts[0]),
    positive("--ramp TO", parts[1]),
    positive("--ramp STEP", parts[2])
  ]
  if (to < from) throw new Error(`--ramp: TO (${to}) is below FROM (${from})`)
  const steps: Array<Step> = []
  // The tolerance keeps a fractional STEP from losing its last rate to rounding.
  for (let i = 0; from + i * step <= to * (1 + 1e-9); i++) steps.push({ rate: from + i * step, seconds })
  return steps
}

export interface Clock {
  /** Milliseconds, monotonic. */
  readonly now: () => number
  /** Resolves after about `ms` (0: after pending I/O has had its turn). */
  readonly wait: (ms: number) => Promise<void>
}

/** The real clock: `performance.now()`, timers for waits of a millisecond or more, `setImmediate` below. */
export const systemClock: Clock = {
  now: () => performance.now(),
  wait: (ms) =>
    new Promise((resolve) => {
      if (ms >= 1) setTimeout(resolve, ms)
      else setImmediate(resolve)
    })
}

export interface ScheduleRun {
  readonly steps: ReadonlyArray<Step>
  readonly clock: Clock
  /** Sends request `index` of step `step`, due at `intended`; must not wait for the answer. */
  readonly send: (step: number, index: number, intended: number) => void
  /** Called when a step has sent its last request, before the next starts; false stops the run. */
  readonly stepSent?: (step: number) => boolean
  readonly signal?: AbortSignal
}

/**
 * Runs the schedule: each request is sent as soon as the clock reaches the time
 * it is due (a late timer sends the overdue ones together, each with its own
 * due time). Steps follow one another with no gap: step k+1 starts where step k's
 * time ends. Answers the number of steps run.
 */
export const runSchedule = async (run: ScheduleRun): Promise<number> => {
  let start = run.clock.now()
  for (let k = 0; k < run.steps.length; k++) {
    const step = run.steps[k]
    const n = stepRequests(step)
    let index = 0
    while (index < n) {
      if (run.signal?.aborted === true) return k
      const now = run.clock.now()
      while (index < n && dueAt(start, step, index) <= now) {
        run.send(k, index, dueAt(start, step, index))
        index++
      }
      if (index < n) await run.clock.wait(dueAt(start, step, index) - run.clock.now())
    }
    start += step.seconds * 1000
    // The step's time runs out after its last request is due.
    const left = start - run.clock.now()
    if (left > 0) await run.clock.wait(left)
    if (run.stepSent !== undefined && !run.stepSent(k)) return k + 1
  }
  return run.steps.length
}
