/** Logs (level, format, access log) and tracing, under the standard OpenTelemetry names. */
import { Config, Context, Layer, Redacted, Schema } from "effect"
import { type InvalidConfig, readAll, type Values } from "./Read.ts"
import { flag, oneOf } from "./Units.ts"

/** The samplers of the OpenTelemetry spec that Strata supports: the parent-based ones. */
export const TracesSampler = ["parentbased_traceidratio", "parentbased_always_on", "parentbased_always_off"] as const

/** Effect's log levels; pino's and OpenTelemetry's spellings (`debug`, `WARN`) match in any case. */
const LogLevels = ["All", "Fatal", "Error", "Warn", "Info", "Debug", "Trace", "None"] as const

/** An absolute http(s) URL, such as an OTLP endpoint. */
const httpUrl = (name: string) =>
  Config.schema(
    Schema.String.check(Schema.isPattern(/^https?:\/\/[^\s/]+/i, { message: "expected an http(s) URL" })),
    name
  )

const isHeaderPair = (pair: string): boolean => {
  if (pair.trim() === "") return true
  const at = pair.indexOf("=")
  if (at <= 0) return false
  try {
    decodeURIComponent(pair.slice(at + 1))
    return true
  } catch {
    return false
  }
}

/** Read on their own too, by observability/Logging.ts: logging is set up before anything else. */
export const loggingFields = {
  logFormat: oneOf(["json", "pretty"], "LOG_FORMAT").pipe(Config.withDefault("json")),
  logLevel: oneOf(LogLevels, "LOG_LEVEL").pipe(Config.withDefault("Info"))
}

export const telemetryFields = {
  ...loggingFields,
  accessLog: flag("ACCESS_LOG").pipe(Config.withDefault(true)),
  // Tracing (standard OpenTelemetry names): off unless an OTLP endpoint is set.
  otlpEndpoint: Config.option(httpUrl("OTEL_EXPORTER_OTLP_ENDPOINT")),
  otlpTracesEndpoint: Config.option(httpUrl("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
  // A pair without "=" (such as `authorization: Bearer …`) would otherwise be dropped without a word.
  otlpHeaders: Config.schema(
    Schema.String.check(Schema.makeFilter((text: string) => text.split(",").every(isHeaderPair), {
      message: "expected name=value pairs separated by commas, values percent-encoded"
    })),
    "OTEL_EXPORTER_OTLP_HEADERS"
  ).pipe(Config.map(Redacted.make), Config.withDefault(Redacted.make(""))),
  otlpProtocol: oneOf(["http/protobuf", "http/json"], "OTEL_EXPORTER_OTLP_PROTOCOL").pipe(
    Config.withDefault("http/protobuf")
  ),
  serviceName: Config.String("OTEL_SERVICE_NAME").pipe(Config.withDefault("strata")),
  tracesSampler: oneOf(TracesSampler, "OTEL_TRACES_SAMPLER").pipe(Config.withDefault("parentbased_traceidratio")),
  tracesSamplerArg: Config.schema(
    Schema.NumberFromString.check(
      Schema.isBetween({ minimum: 0, maximum: 1 }, { message: "expected a ratio from 0 to 1, such as 0.01" })
    ),
    "OTEL_TRACES_SAMPLER_ARG"
  ).pipe(Config.withDefault(0.01))
}

export type TelemetrySettings = Values<typeof telemetryFields>

export class TelemetryConfig
  extends Context.Service<TelemetryConfig, TelemetrySettings>()("strata/config/TelemetryConfig")
{
  static readonly layer: Layer.Layer<TelemetryConfig, InvalidConfig> = Layer.effect(
    TelemetryConfig,
    readAll(telemetryFields)
  )
}
