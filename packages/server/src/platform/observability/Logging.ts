/**
 * Logs as JSON lines on stdout (LOG_FORMAT=json, the default) or readable lines
 * (LOG_FORMAT=pretty), at LOG_LEVEL and above. A JSON line carries `time`,
 * `level`, `message`, the `requestId`, `traceId` and `spanId` when there are
 * any, then the fields the message came with and the `cause` of a failure:
 *
 *   {"time":"…","level":"info","message":"Starting Strata","database":"embedded PGlite","port":8080}
 *
 * What is logged is chosen so that no secret and no record content appears:
 * URLs with passwords are masked before logging, Redacted values print as
 * `<redacted>`, headers are never logged.
 */
import { Context, Effect, Formatter, Layer, Logger, Predicate, References, Tracer } from "effect"
import { readAll } from "../config/Read.ts"
import { loggingFields } from "../config/TelemetryConfig.ts"
import { RequestId } from "../http/RequestId.ts"
import { recordedSpan } from "./Tracing.ts"

const isPlainObject = (u: unknown): u is Record<string, unknown> =>
  Predicate.isObject(u) && !Array.isArray(u) && Object.getPrototypeOf(u) === Object.prototype

/** One log entry as a JSON object with the fields above. */
export const jsonLine = Logger.make((options) => {
  const entry = Logger.formatStructured.log(options)
  // `Effect.log("text", { field })` logs several parts: the first is the message.
  const [first, ...rest] = Array.isArray(options.message) && options.message.length > 1
    ? entry.message as Array<unknown>
    : [entry.message]
  const line: Record<string, unknown> = {
    time: entry.timestamp,
    level: entry.level.toLowerCase(),
    message: typeof first === "string" ? first : first === undefined ? "" : Formatter.formatJson(first)
  }
  const requestId = options.fiber.getRef(RequestId)
  if (requestId !== "") line.requestId = requestId
  const parent = Context.getOrUndefined(options.fiber.context, Tracer.ParentSpan)
  const span = parent === undefined ? undefined : recordedSpan(parent)
  if (span !== undefined && span._tag === "Some") {
    line.traceId = span.value.traceId
    line.spanId = span.value.spanId
  }
  const details: Array<unknown> = []
  for (const part of rest) {
    if (isPlainObject(part)) Object.assign(line, { ...part, ...line })
    else details.push(part)
  }
  if (details.length > 0) line.detail = details.length === 1 ? details[0] : details
  for (const [key, value] of Object.entries(entry.annotations)) if (!(key in line)) line[key] = value
  if (entry.cause !== undefined) line.cause = entry.cause
  return Formatter.formatJson(line)
})

/** JSON lines on the console: the logger of LOG_FORMAT=json, which the access log writes for itself (AccessLog.ts). */
export const jsonConsoleLogger = Logger.withConsoleLog(jsonLine)

// Read straight from the environment, not from TelemetryConfig's layer:
// logging is set up before anything else.
export const layerLogging = Layer.unwrap(Effect.gen(function*() {
  const { logFormat: format, logLevel: level } = yield* readAll(loggingFields)
  return Layer.mergeAll(
    Logger.layer([format === "json" ? jsonConsoleLogger : Logger.consolePretty()]),
    Layer.succeed(References.MinimumLogLevel, level)
  )
}))
