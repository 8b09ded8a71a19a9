/**
 * The units operators write in environment variables (Units.ts): durations,
 * byte sizes and bounded whole numbers, read through a ConfigProvider as the
 * server reads them.
 */
import { describe, expect, it } from "@effect/vitest"
import { type Config, ConfigProvider, Duration, Effect, Exit } from "effect"
import { bytes, duration, intBetween, parseDuration } from "../../src/platform/config/Units.ts"

/** Reads `config` from an environment holding only `X=value` (none when undefined). */
const read = <A>(config: Config.Config<A>, value: string | undefined) =>
  Effect.exit(config.parse(ConfigProvider.fromEnvRecord({ X: value })))

const expectValue = <A>(exit: Exit.Exit<A, unknown>, value: A) => expect(exit).toEqual(Exit.succeed(value))
const expectRefused = (exit: Exit.Exit<unknown, unknown>, message?: string) => {
  expect(Exit.isFailure(exit)).toBe(true)
  if (message !== undefined) expect(String(Exit.isFailure(exit) ? exit.cause : "")).toContain(message)
}

describe("duration", () => {
  it.effect("reads each unit: ms, s, m (minutes), h, d", () =>
    Effect.gen(function*() {
      const millis = (text: string) => Effect.map(read(duration("X"), text), Exit.map(Duration.toMillis))
      expectValue(yield* millis("2ms"), 2)
      expectValue(yield* millis("30s"), 30_000)
      expectValue(yield* millis("5m"), 300_000)
      expectValue(yield* millis("24h"), 86_400_000)
      expectValue(yield* millis("400d"), 400 * 86_400_000)
      expectValue(yield* millis("0s"), 0)
    }))

  it.effect("reads fractions and a space before the unit", () =>
    Effect.gen(function*() {
      const millis = (text: string) => Effect.map(read(duration("X"), text), Exit.map(Duration.toMillis))
      expectValue(yield* millis("1.5s"), 1500)
      expectValue(yield* millis("0.5ms"), 0.5)
      expectValue(yield* millis("30 s"), 30_000)
    }))

  it.effect("refuses what is not a duration, saying what is expected", () =>
    Effect.gen(function*() {
      for (const bad of ["30", "s", "-5s", "5 minutes", "5S", "1e3ms", "5w", ".5s", "5.s", " 5s", "5s ", "5m5s"]) {
        expectRefused(yield* read(duration("X"), bad), "expected a duration such as 2ms, 30s, 5m, 24h or 400d")
      }
    }))

  it.effect("fails when the variable is missing", () =>
    Effect.gen(function*() {
      expectRefused(yield* read(duration("X"), undefined))
    }))
})

describe("parseDuration", () => {
  it("trims, for text that was not read through the config", () => {
    expect(Duration.toMillis(parseDuration(" 7d "))).toBe(7 * 86_400_000)
  })

  it("throws on text that is not a duration (callers catch it)", () => {
    expect(() => parseDuration("soon")).toThrow()
  })
})

describe("bytes", () => {
  it.effect("reads plain numbers and binary units", () =>
    Effect.gen(function*() {
      expectValue(yield* read(bytes("X"), "65536"), 65536)
      expectValue(yield* read(bytes("X"), "0"), 0)
      expectValue(yield* read(bytes("X"), "512B"), 512)
      expectValue(yield* read(bytes("X"), "64KiB"), 65536)
      expectValue(yield* read(bytes("X"), "1MiB"), 1_048_576)
      expectValue(yield* read(bytes("X"), "2GiB"), 2 * 1024 ** 3)
      expectValue(yield* read(bytes("X"), "1 MiB"), 1_048_576)
    }))

  it.effect("refuses decimal units, fractions, signs and lowercase units", () =>
    Effect.gen(function*() {
      for (const bad of ["1MB", "1KB", "1kib", "1.5MiB", "-1", "+1", "MiB", "1TiB", "1 000", ""]) {
        expectRefused(yield* read(bytes("X"), bad))
      }
      expectRefused(yield* read(bytes("X"), "1MB"), "expected a size in bytes such as 65536, 64KiB or 1MiB")
    }))
})

describe("intBetween", () => {
  it.effect("reads whole numbers within the bounds, the bounds included", () =>
    Effect.gen(function*() {
      expectValue(yield* read(intBetween("X", 1, 10), "1"), 1)
      expectValue(yield* read(intBetween("X", 1, 10), "10"), 10)
      expectValue(yield* read(intBetween("X", 1, 10), "7"), 7)
      expectValue(yield* read(intBetween("X", -5, 5), "-5"), -5)
    }))

  it.effect("refuses numbers outside the bounds, fractions and text", () =>
    Effect.gen(function*() {
      for (const bad of ["0", "11", "1.5", "abc", "Infinity", "NaN"]) {
        expectRefused(yield* read(intBetween("X", 1, 10), bad), "expected a whole number from 1 to 10")
      }
    }))
})
