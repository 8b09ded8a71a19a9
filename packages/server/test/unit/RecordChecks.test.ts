/**
 * The record checks of the write path (domain/src/Record.ts): which calendar days
 * an `occurredAt` may name, and how deep and how clean `data` must be.
 */
import { describe, expect, it } from "@effect/vitest"
import { checkJsonValue, isNewRecord, isValidInstant, MAX_DATA_DEPTH } from "@strata/domain"

/** A value of `depth` nested objects and arrays around a number. */
const nested = (depth: number): unknown => {
  let value: unknown = 1
  for (let i = 0; i < depth; i++) value = i % 2 === 0 ? { a: value } : [value]
  return value
}

describe("isValidInstant", () => {
  it("takes every day a month has, leap days included", () => {
    for (
      const s of [
        "2026-01-01T00:00:00Z",
        "2026-02-28T23:59:59Z",
        "2024-02-29T12:00:00Z",
        "2000-02-29T00:00:00Z",
        "2026-01-31T00:00:00Z",
        "2026-04-30T00:00:00+02:00",
        "2026-12-31T23:59:59.999999999Z"
      ]
    ) expect(isValidInstant(s), s).toBe(true)
  })

  it("refuses days a month does not have, which Date.parse would roll over", () => {
    for (
      const s of [
        "2026-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-06-31T00:00:00Z",
        "2026-01-32T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "yesterday"
      ]
    ) expect(isValidInstant(s), s).toBe(false)
  })
})

describe("checkJsonValue", () => {
  it(`takes data nested ${MAX_DATA_DEPTH} levels deep and refuses one level more`, () => {
    expect(checkJsonValue(nested(MAX_DATA_DEPTH))).toBeUndefined()
    expect(checkJsonValue(nested(MAX_DATA_DEPTH + 1))).toMatch(/nest deeper/)
  })

  it("refuses data nested far deeper without overflowing the stack", () => {
    expect(checkJsonValue(nested(200_000))).toMatch(/nest deeper/)
  })

  it("refuses NUL and lone surrogates in strings and keys, anywhere", () => {
    expect(checkJsonValue({ a: [{ b: "x\u0000y" }] })).toMatch(/strings/)
    expect(checkJsonValue({ a: ["\ud800"] })).toMatch(/strings/)
    expect(checkJsonValue({ a: { "k\u0000": 1 } })).toMatch(/keys/)
    expect(checkJsonValue({ a: [{ b: "ok \u00e9 \ud83d\ude00" }], c: null, d: 1.5 })).toBeUndefined()
  })

  it("is what isNewRecord applies to data", () => {
    // `data` itself is the first level.
    expect(isNewRecord({ stream: "s", data: { a: nested(MAX_DATA_DEPTH - 1) } })).toBe(true)
    expect(isNewRecord({ stream: "s", data: { a: nested(MAX_DATA_DEPTH) } })).toBe(false)
    expect(isNewRecord({ stream: "s", data: { a: "\u0000" } })).toBe(false)
  })
})
