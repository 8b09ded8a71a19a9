/**
 * The access log (ACCESS_LOG, on by default): one info line per request with
 * the method, the route template (never the raw path: ids and query strings
 * stay out of the logs), the status and the duration, under the request id
 * the client got back and the request's trace. Fed by the request's
 * bookkeeping (RequestBookkeeping.ts) as it ends, on both request paths.
 *
 * A request does not run an Effect of its own for its line: with the logger
 * `main` installs (JSON lines on stdout) the line is made here, in the very
 * form `jsonLine` gives it, and the lines of one turn of the event loop go out
 * in one write. Any other logger (pretty lines, a test's own) gets the line
 * through Effect's logging, as any other log line.
 */
import { Context, Effect, Logger, LogLevel, Option, References, type Tracer } from "effect"
import { RequestId } from "../http/RequestId.ts"
import { perTurn } from "../runtime/PerTurn.ts"
import type { RequestOutcome } from "./HttpMetrics.ts"
import { jsonConsoleLogger } from "./Logging.ts"
import { recordedSpan } from "./Tracing.ts"

/** Writes the access line of a request that ended, under `span` (the request's, when it has one). */
export type AccessLog = (outcome: RequestOutcome, span: Tracer.AnySpan | undefined) => void

const durationMs = (seconds: number) => Math.round(seconds * 100_000) / 100

/** The access line as an Effect log line (for loggers other than the JSON one). */
export const logAccess = (outcome: RequestOutcome): Effect.Effect<void> => {
  const line = Effect.logInfo(`${outcome.method} ${outcome.route} ${outcome.status}`, {
    method: outcome.method,
    route: outcome.route,
    status: outcome.status,
    durationMs: durationMs(outcome.seconds)
  })
  return outcome.requestId === undefined ? line : Effect.provideService(line, RequestId, outcome.requestId)
}

/** The access line as `jsonLine` writes it: the same fields in the same order. */
export const accessJson = (outcome: RequestOutcome, span: Tracer.AnySpan | undefined, time: Date): string => {
  const line: Record<string, unknown> = {
    time: time.toISOString(),
    level: "info",
    message: `${outcome.method} ${outcome.route} ${outcome.status}`
  }
  if (outcome.requestId !== undefined && outcome.requestId !== "") line.requestId = outcome.requestId
  const recorded = span === undefined ? undefined : recordedSpan(span)
  if (recorded !== undefined && Option.isSome(recorded)) {
    line.traceId = recorded.value.traceId
    line.spanId = recorded.value.spanId
  }
  line.method = outcome.method
  line.route = outcome.route
  line.status = outcome.status
  line.durationMs = durationMs(outcome.seconds)
  return JSON.stringify(line)
}

/**
 * The access log for the loggers and log level of `context`, or undefined when
 * no line would be written (ACCESS_LOG=false, or LOG_LEVEL above Info).
 */
export const makeAccessLog = (context: Context.Context<never>, enabled: boolean): AccessLog | undefined => {
  if (!enabled || !LogLevel.isGreaterThanOrEqualTo("Info", Context.get(context, References.MinimumLogLevel))) {
    return undefined
  }
  const loggers = Context.get(context, Logger.CurrentLoggers)
  if (loggers.size === 1 && loggers.has(jsonConsoleLogger)) {
    const write = perTurn<string>((lines) => {
      process.stdout.write(`${lines.join("\n")}\n`)
    })
    return (outcome, span) => write(accessJson(outcome, span, new Date()))
  }
  return (outcome, span) => {
    const line = logAccess(outcome)
    Effect.runSyncWith(context)(span === undefined ? line : Effect.withParentSpan(line, span))
  }
}
