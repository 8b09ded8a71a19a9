/**
 * NDJSON lines as a body's chunks arrive (platform/http/NdjsonLines.ts): a line
 * may be split anywhere, CRLF and a BOM are dropped, the last line needs no
 * newline, and a line over the limit is reported by its length without being held.
 */
import { describe, expect, it } from "@effect/vitest"
import { type Line, LineSplitter } from "../../src/platform/http/NdjsonLines.ts"

/** The lines of `body` cut into chunks of `size` bytes. */
const linesOf = (body: string | Buffer, size: number, max = 100) => {
  const bytes = typeof body === "string" ? Buffer.from(body) : body
  const splitter = new LineSplitter(max)
  const out: Array<{ number: number; text: string | undefined; length: number }> = []
  const f = (line: Line) => out.push({ number: line.number, text: line.bytes?.toString(), length: line.length })
  for (let at = 0; at < bytes.length; at += size) splitter.push(bytes.subarray(at, at + size), f)
  splitter.end(f)
  return out
}

describe("LineSplitter", () => {
  it("gives the same lines however the body is cut", () => {
    const body = "\uFEFF{\"a\":1}\r\n\r\n{\"b\":2}\n  \n{\"c\":3}"
    const expected = [
      { number: 1, text: "{\"a\":1}", length: 7 },
      { number: 2, text: "", length: 0 },
      { number: 3, text: "{\"b\":2}", length: 7 },
      { number: 4, text: "  ", length: 2 },
      { number: 5, text: "{\"c\":3}", length: 7 }
    ]
    for (const size of [1, 2, 3, 5, 8, 1000]) expect(linesOf(body, size), `chunks of ${size}`).toEqual(expected)
  })

  it("ends with the last newline: no empty line after it", () => {
    expect(linesOf("a\nb\n", 1).map((l) => l.text)).toEqual(["a", "b"])
  })

  it("reports a line over the limit by its length, skips its bytes, and goes on", () => {
    const body = `ok\n${"x".repeat(250)}\r\nafter`
    for (const size of [1, 7, 64, 1000]) {
      expect(linesOf(body, size)).toEqual([
        { number: 1, text: "ok", length: 2 },
        { number: 2, text: undefined, length: 251 },
        { number: 3, text: "after", length: 5 }
      ])
    }
  })

  it("keeps a line of exactly the limit, its CR aside", () => {
    expect(linesOf(`${"y".repeat(100)}\r\n`, 3)).toEqual([{ number: 1, text: "y".repeat(100), length: 100 }])
  })
})
