/**
 * `formatPath` (Validation.ts): how a field's path is written in a 400's `errors`.
 */
import { describe, expect, it } from "@effect/vitest"
import { formatPath } from "../../src/platform/http/Validation.ts"

describe("formatPath", () => {
  it("writes an empty path as the empty string (the caller says `(body)`)", () => {
    expect(formatPath([])).toBe("")
  })

  it("joins keys with dots and writes indexes in brackets", () => {
    expect(formatPath(["stream"])).toBe("stream")
    expect(formatPath(["data", "customer", "name"])).toBe("data.customer.name")
    expect(formatPath(["records", 3, "data"])).toBe("records[3].data")
    expect(formatPath(["matrix", 0, 1])).toBe("matrix[0][1]")
  })

  it("starts with a bracket when the path starts with an index", () => {
    expect(formatPath([0])).toBe("[0]")
    expect(formatPath([2, "id"])).toBe("[2].id")
  })

  it("keeps a numeric string key a key, not an index", () => {
    expect(formatPath(["data", "0"])).toBe("data.0")
  })

  it("writes symbols by their description", () => {
    expect(formatPath(["data", Symbol("tag")])).toBe("data.Symbol(tag)")
  })
})
