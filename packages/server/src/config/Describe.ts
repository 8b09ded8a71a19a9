/**
 * The effective configuration as `NAME=value` lines for `pnpm strata config`:
 * every setting under its environment variable, secrets redacted (a database
 * URL keeps its host and name, never its password).
 */
import { Duration, Option, Redacted } from "effect"
import { describeDatabase, type Settings } from "./AppConfig.ts"

/** `databasePoolMax` → `DATABASE_POOL_MAX`: the settings are named after their variables. */
const envName = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()

const show = (value: unknown): string => {
  if (Redacted.isRedacted(value)) return "<redacted>"
  if (Duration.isDuration(value)) return Duration.format(value)
  if (Option.isOption(value)) return Option.match(value, { onNone: () => "(unset)", onSome: show })
  if (Array.isArray(value)) return value.map(show).join(",")
  return String(value)
}

export const effectiveConfig = (settings: Settings): ReadonlyArray<readonly [string, string]> =>
  Object.entries(settings).map(([key, value]) =>
    [
      envName(key),
      key === "databaseUrl"
        ? Option.isSome(settings.databaseUrl) ? describeDatabase(settings.databaseUrl) : "(unset: embedded PGlite)"
        : show(value)
    ] as const
  )
