/**
 * Parsers for the units operators write in environment variables:
 * durations (`2ms`, `30s`, `5m`, `24h`, `400d`), byte sizes (`65536`, `64KiB`, `1MiB`),
 * whole numbers in a range, switches and enumerations (any case: `debug`, `WARN`).
 */
import { Config, Duration, Schema } from "effect"

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/
const DURATION_UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const

const BYTES = /^(\d+)\s*(B|KiB|MiB|GiB)?$/
const BYTES_UNIT = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 } as const

export const parseDuration = (text: string): Duration.Duration => {
  const [, amount, unit] = DURATION.exec(text.trim())!
  return Duration.millis(Number(amount) * DURATION_UNIT_MS[unit as keyof typeof DURATION_UNIT_MS])
}

/** A duration variable such as `WRITE_BATCH_WINDOW=2ms`. */
export const duration = (name: string): Config.Config<Duration.Duration> =>
  Config.schema(
    Schema.String.check(Schema.isPattern(DURATION, {
      message: "expected a duration such as 2ms, 30s, 5m, 24h or 400d"
    })),
    name
  ).pipe(Config.map(parseDuration))

/** A byte-size variable such as `MAX_BODY_BYTES=1MiB`. */
export const bytes = (name: string): Config.Config<number> =>
  Config.schema(
    Schema.String.check(Schema.isPattern(BYTES, {
      message: "expected a size in bytes such as 65536, 64KiB or 1MiB"
    })),
    name
  ).pipe(Config.map((text) => {
    const [, amount, unit] = BYTES.exec(text.trim())!
    return Number(amount) * BYTES_UNIT[(unit ?? "B") as keyof typeof BYTES_UNIT]
  }))

/** A whole number between `min` and `max`. */
export const intBetween = (name: string, min: number, max: number): Config.Config<number> =>
  Config.schema(
    Schema.NumberFromString.check(
      Schema.isInt({ message: `expected a whole number from ${min} to ${max}` }),
      Schema.isBetween({ minimum: min, maximum: max }, { message: `expected a whole number from ${min} to ${max}` })
    ),
    name
  )

/** A switch such as `MIGRATE_ON_START=false`: true/false, yes/no, on/off, 1/0, in any case. */
export const flag = (name: string): Config.Config<boolean> =>
  oneOf(["true", "false", "yes", "no", "on", "off", "1", "0"], name).pipe(
    Config.map((word) => word === "true" || word === "yes" || word === "on" || word === "1")
  )

/**
 * One of `literals`, matched in any case and answered in the spelling given here:
 * operators write `debug` or `WARN` (pino, OpenTelemetry) where Effect says `Debug`, `Warn`.
 */
export const oneOf = <const L extends ReadonlyArray<string>>(literals: L, name: string): Config.Config<L[number]> => {
  const find = (text: string) => literals.find((literal) => literal.toLowerCase() === text.trim().toLowerCase())
  return Config.schema(
    Schema.String.check(Schema.makeFilter((text: string) => find(text) !== undefined, {
      message: `expected one of ${literals.join(", ")} (any case)`
    })),
    name
  ).pipe(Config.map((text) => find(text)!))
}
