/**
 * Record ids (RecordId.ts): UUIDv7 whose time prefix is the record's occurredAt,
 * so ids sort by time and the time can be read back.
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { makeRecordId, recordIdTime } from "../../src/records/RecordId.ts"

const MAX_MS = 2 ** 48 - 1
const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe("makeRecordId", () => {
  it("makes a lowercase UUIDv7 with the RFC 9562 variant", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: MAX_MS }), (ms) => {
      expect(makeRecordId(ms)).toMatch(V7)
    }))
  })

  it("puts the time first: recordIdTime gives it back, to the millisecond", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: MAX_MS }), (ms) => {
      expect(recordIdTime(makeRecordId(ms))).toBe(ms)
    }))
    expect(recordIdTime(makeRecordId(0))).toBe(0)
    expect(recordIdTime(makeRecordId(MAX_MS))).toBe(MAX_MS)
    expect(makeRecordId(Date.parse("2026-01-01T00:00:00.000Z")).slice(0, 13)).toBe("019b76da-a800")
  })

  it("sorts as strings in the order of the times", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: MAX_MS }), fc.integer({ min: 0, max: MAX_MS }), (a, b) => {
      fc.pre(a !== b)
      expect(makeRecordId(a) < makeRecordId(b)).toBe(a < b)
    }))
  })

  it("makes distinct ids within one millisecond, across refills of its random pool", () => {
    // The pool holds 256 ids' worth of random bytes: 1,000 ids refill it several times.
    const ids = Array.from({ length: 1000 }, () => makeRecordId(1_700_000_000_000))
    expect(new Set(ids).size).toBe(ids.length)
    for (const id of ids) expect(recordIdTime(id)).toBe(1_700_000_000_000)
  })
})

describe("recordIdTime", () => {
  it("reads uppercase ids too", () => {
    const id = makeRecordId(1_700_000_000_123)
    expect(recordIdTime(id.toUpperCase())).toBe(1_700_000_000_123)
  })

  it("answers undefined for ids that are not UUIDv7", () => {
    for (
      const id of [
        "",
        "not-a-uuid",
        "3f0e2b5c-8f1e-4c3a-9b2d-7e6f5a4b3c2d", // v4
        "019b7687-6000-1000-8000-000000000000", // v1
        "019b76876000-7000-8000-000000000000", // a dash missing
        "019b7687-6000-7000-8000-00000000000", // a digit short
        "019b7687-6000-7000-8000-00000000000g",
        " 019b7687-6000-7000-8000-000000000000"
      ]
    ) {
      expect(recordIdTime(id)).toBeUndefined()
    }
  })
})
