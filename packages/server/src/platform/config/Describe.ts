/**
 * The effective configuration as `NAME=value` lines for `pnpm strata config`:
 * every setting under its environment variable, secrets redacted (a database
 * URL keeps its host and name, never its password).
 */
import { Duration, Option, Redacted } from "effect"
import { describeDatabase, type Settings } from "./AppConfig.ts"

/** The OpenTelemetry settings keep the standard variable names. */
const STANDARD_NAMES: Record<string, string> = {
  otlpEndpoint: "OTEL_EXPORTER_OTLP_ENDPOINT",
  otlpTracesEndpoint: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
  otlpHeaders: "OTEL_EXPORTER_OTLP_HEADERS",
  otlpProtocol: "OTEL_EXPORTER_OTLP_PROTOCOL",
  serviceName: "OTEL_SERVICE_NAME",
  tracesSampler: "OTEL_TRACES_SAMPLER",
  tracesSamplerArg: "OTEL_TRACES_SAMPLER_ARG"
}

/** `databasePoolMax` → `DATABASE_POOL_MAX`: the other settings are named after their variables. */
export const envName = (key: string) => STANDARD_NAMES[key] ?? key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()

const show = (value: unknown): string => {
  if (Redacted.isRedacted(value)) return "<redacted>"
  if (Duration.isDuration(value)) return Duration.format(value)
  if (Option.isOption(value)) return Option.match(value, { onNone: () => "(unset)", onSome: show })
  if (Array.isArray(value)) return value.map(show).join(",")
  return String(value)
}

export const effectiveConfig = (
  settings: Settings & Record<string, unknown>
): ReadonlyArray<readonly [string, string]> =>
  Object.entries(settings).map(([key, value]) =>
    [
      envName(key),
      key === "databaseUrl"
        ? Option.isSome(settings.databaseUrl) ? describeDatabase(settings.databaseUrl) : "(unset: embedded PGlite)"
        : key === "databaseReadUrl"
        ? settings.databaseReadUrl.map((url) => describeDatabase(Option.some(url))).join(",")
        : show(value)
    ] as const
  )
