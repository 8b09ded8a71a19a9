/**
 * Time partitions of `records` (Partitions.ts): which partition holds an
 * instant for each PARTITION_INTERVAL, and the next one.
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { nextPartition, partitionFor } from "../../src/records/Partitions.ts"

const at = (iso: string) => Date.parse(iso)
const bounds = (interval: "day" | "week" | "month", iso: string) => {
  const b = partitionFor(interval, at(iso))
  return { name: b.name, from: b.from.toISOString(), to: b.to.toISOString() }
}

const instant = fc.integer({ min: at("1970-01-01T00:00:00Z"), max: at("2999-12-31T23:59:59.999Z") })
const interval = fc.constantFrom("day" as const, "week" as const, "month" as const)

describe("partitionFor", () => {
  it("day: midnight UTC to midnight UTC, whatever the time of day", () => {
    const expected = { name: "records_20260315", from: "2026-03-15T00:00:00.000Z", to: "2026-03-16T00:00:00.000Z" }
    expect(bounds("day", "2026-03-15T00:00:00.000Z")).toEqual(expected)
    expect(bounds("day", "2026-03-15T23:59:59.999Z")).toEqual(expected)
    expect(bounds("day", "2026-03-16T00:00:00.000Z").name).toBe("records_20260316")
  })

  it("day: across a month end and a leap day", () => {
    expect(bounds("day", "2024-02-29T12:00:00Z")).toEqual({
      name: "records_20240229",
      from: "2024-02-29T00:00:00.000Z",
      to: "2024-03-01T00:00:00.000Z"
    })
    expect(bounds("day", "2025-12-31T18:00:00Z").to).toBe("2026-01-01T00:00:00.000Z")
  })

  it("week: ISO weeks, Monday to Monday, across a year end", () => {
    // 2026-01-01 is a Thursday: its week began on Monday 2025-12-29.
    const expected = { name: "records_20251229", from: "2025-12-29T00:00:00.000Z", to: "2026-01-05T00:00:00.000Z" }
    expect(bounds("week", "2026-01-01T10:00:00Z")).toEqual(expected)
    expect(bounds("week", "2025-12-29T00:00:00.000Z")).toEqual(expected)
    expect(bounds("week", "2026-01-04T23:59:59.999Z")).toEqual(expected) // Sunday
    expect(bounds("week", "2026-01-05T00:00:00.000Z").name).toBe("records_20260105")
  })

  it("week: across a leap day", () => {
    // 2024-02-29 is a Thursday.
    expect(bounds("week", "2024-02-29T00:00:00Z")).toEqual({
      name: "records_20240226",
      from: "2024-02-26T00:00:00.000Z",
      to: "2024-03-04T00:00:00.000Z"
    })
  })

  it("month: the first of the month to the first of the next, December into January", () => {
    expect(bounds("month", "2026-01-31T23:59:59.999Z")).toEqual({
      name: "records_20260101",
      from: "2026-01-01T00:00:00.000Z",
      to: "2026-02-01T00:00:00.000Z"
    })
    expect(bounds("month", "2025-12-15T00:00:00Z")).toEqual({
      name: "records_20251201",
      from: "2025-12-01T00:00:00.000Z",
      to: "2026-01-01T00:00:00.000Z"
    })
  })

  it("month: February has 29 days in leap years only (2000 and 2024, not 1900 or 2100 or 2025)", () => {
    const days = (iso: string) => {
      const b = partitionFor("month", at(iso))
      return (b.to.getTime() - b.from.getTime()) / 86_400_000
    }
    expect(days("2024-02-10T00:00:00Z")).toBe(29)
    expect(days("2000-02-10T00:00:00Z")).toBe(29)
    expect(days("2025-02-10T00:00:00Z")).toBe(28)
    expect(days("2100-02-10T00:00:00Z")).toBe(28)
    expect(days("2026-04-10T00:00:00Z")).toBe(30)
    expect(days("2026-07-10T00:00:00Z")).toBe(31)
  })

  it("holds the instant, starts at a UTC midnight, and is named after its start", () => {
    fc.assert(fc.property(interval, instant, (i, ms) => {
      const b = partitionFor(i, ms)
      expect(b.from.getTime()).toBeLessThanOrEqual(ms)
      expect(ms).toBeLessThan(b.to.getTime())
      // (== 0, not toBe(0): the week holding the epoch starts before it, and -0 is a midnight too)
      expect(b.from.getTime() % 86_400_000 === 0).toBe(true)
      expect(b.name).toBe(`records_${b.from.toISOString().slice(0, 10).replaceAll("-", "")}`)
      if (i === "week") expect(b.from.getUTCDay()).toBe(1)
      if (i === "month") expect(b.from.getUTCDate()).toBe(1)
      // Every instant of the partition maps to the same partition.
      expect(partitionFor(i, b.to.getTime() - 1)).toEqual(b)
    }))
  })
})

describe("nextPartition", () => {
  it("starts where the last one ends, so partitions leave no gap and do not overlap", () => {
    fc.assert(fc.property(interval, instant, (i, ms) => {
      const b = partitionFor(i, ms)
      const next = nextPartition(i, b)
      expect(next.from).toEqual(b.to)
      expect(next.name).not.toBe(b.name)
      expect(next.to.getTime()).toBeGreaterThan(next.from.getTime())
    }))
  })

  it("goes from December into January, and from February into March in a leap year", () => {
    const december = partitionFor("month", at("2025-12-01T00:00:00Z"))
    expect(nextPartition("month", december).name).toBe("records_20260101")
    const february = partitionFor("month", at("2024-02-01T00:00:00Z"))
    expect(nextPartition("month", february).name).toBe("records_20240301")
    const leapDay = partitionFor("day", at("2024-02-29T00:00:00Z"))
    expect(nextPartition("day", leapDay).name).toBe("records_20240301")
  })
})
