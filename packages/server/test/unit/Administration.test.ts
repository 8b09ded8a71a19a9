/**
 * `parseExpiry` (Administration.ts): an API key's `expires` duration as the
 * instant it ends, counted from the Clock (here the TestClock).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { TestClock } from "effect/testing"
import { parseExpiry } from "../../src/admin/Administration.ts"

const T = Date.parse("2026-02-28T12:00:00.000Z")

describe("parseExpiry", () => {
  it.effect("counts the duration from now", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T)
      expect((yield* parseExpiry("30d"))?.toISOString()).toBe("2026-03-30T12:00:00.000Z")
      expect((yield* parseExpiry("90m"))?.toISOString()).toBe("2026-02-28T13:30:00.000Z")
      yield* TestClock.adjust("1 hour")
      expect((yield* parseExpiry("12h"))?.toISOString()).toBe("2026-03-01T01:00:00.000Z")
    }))

  it.effect("no expires: no expiry", () =>
    Effect.gen(function*() {
      expect(yield* parseExpiry(undefined)).toBeUndefined()
    }))

  it.effect("refuses what is not a duration, naming the field", () =>
    Effect.gen(function*() {
      for (const bad of ["soon", "30", "-1d", ""]) {
        const exit = yield* Effect.exit(parseExpiry(bad))
        expect(Exit.isFailure(exit)).toBe(true)
        expect(String(Exit.isFailure(exit) ? exit.cause : "")).toContain("expected a duration such as 30d, 12h or 90m")
      }
    }))
})
