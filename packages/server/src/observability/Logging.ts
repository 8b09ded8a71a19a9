/**
 * Logs as JSON lines on stdout (LOG_FORMAT=json, the default) or readable lines
 * (LOG_FORMAT=pretty), at LOG_LEVEL and above.
 */
import { Config, Effect, Layer, Logger, References } from "effect"

export const LoggingLive = Layer.unwrap(Effect.gen(function*() {
  const format = yield* Config.Literals(["json", "pretty"], "LOG_FORMAT").pipe(Config.withDefault("json"))
  const level = yield* Config.LogLevel("LOG_LEVEL").pipe(Config.withDefault("Info"))
  return Layer.mergeAll(
    Logger.layer([format === "json" ? Logger.consoleJson : Logger.consolePretty()]),
    Layer.succeed(References.MinimumLogLevel, level)
  )
}))
