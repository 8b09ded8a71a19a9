/**
 * Which coding an answer gets (platform/http/ResponseCoding.ts): the client's
 * highest weighted among zstd, br and gzip, zstd first among equals, none when
 * it accepts none of them.
 */
import { describe, expect, it } from "@effect/vitest"
import { responseCodingOf } from "../../src/platform/http/ResponseCoding.ts"

describe("responseCodingOf", () => {
  it("takes the client's highest weight, zstd then br then gzip among equals", () => {
    expect(responseCodingOf("gzip")).toBe("gzip")
    expect(responseCodingOf("gzip, deflate, br, zstd")).toBe("zstd")
    expect(responseCodingOf("gzip, br")).toBe("br")
    expect(responseCodingOf("br;q=0.5, gzip;q=0.8")).toBe("gzip")
    expect(responseCodingOf("*")).toBe("gzip")
    expect(responseCodingOf("ZSTD;Q=1")).toBe("zstd")
  })

  it("answers none for no header, identity, refusals and codings it does not have", () => {
    expect(responseCodingOf(undefined)).toBeNull()
    expect(responseCodingOf("")).toBeNull()
    expect(responseCodingOf("identity")).toBeNull()
    expect(responseCodingOf("gzip;q=0")).toBeNull()
    expect(responseCodingOf("deflate, compress")).toBeNull()
    expect(responseCodingOf("gzip;q=nonsense")).toBeNull()
  })
})
