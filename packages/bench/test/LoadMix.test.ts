import { describe, expect, it } from "@effect/vitest"
import { DEFAULT_MIX, describeMix, kindAt, KINDS, loadRecord, parseMix, requestMaker } from "../src/LoadMix.ts"

describe("parseMix", () => {
  it("reads the default: 80 % reads, 20 % writes", () => {
    const mix = parseMix(DEFAULT_MIX)
    expect(mix).toEqual([
      { kind: "get-hot", share: 0.6 },
      { kind: "get-cold", share: 0.1 },
      { kind: "range", share: 0.1 },
      { kind: "post", share: 0.15 },
      { kind: "batch", share: 0.05 }
    ])
    expect(describeMix(mix)).toBe("get-hot 60 %, get-cold 10 %, range 10 %, post 15 %, batch 5 %")
  })

  it("scales weights to shares and leaves out kinds with none", () => {
    expect(parseMix(" post = 1 , get-hot=3, range=0")).toEqual([
      { kind: "get-hot", share: 0.75 },
      { kind: "post", share: 0.25 }
    ])
  })

  it("says what is wrong with bad input", () => {
    expect(() => parseMix("get-warm=5")).toThrow(/unknown kind "get-warm"; the kinds are get-hot, get-cold/)
    for (const bad of ["post=-1", "post=x", "post", "post=", "post=1=2"]) {
      expect(() => parseMix(bad)).toThrow(/is not kind=weight with a non-negative number/)
    }
    expect(() => parseMix("post=1,post=2")).toThrow(/post is given twice/)
    expect(() => parseMix("post=0")).toThrow(/no kind has a positive weight/)
    expect(() => parseMix("")).toThrow(/no kind has a positive weight/)
  })
})

describe("kindAt", () => {
  it("lays the shares end to end over [0, 1)", () => {
    const mix = parseMix(DEFAULT_MIX)
    expect(kindAt(mix, 0)).toBe("get-hot")
    expect(kindAt(mix, 0.5999)).toBe("get-hot")
    expect(kindAt(mix, 0.6)).toBe("get-cold")
    expect(kindAt(mix, 0.9999)).toBe("batch")
    const counts = new Map<string, number>()
    for (let i = 0; i < 1000; i++) {
      const kind = kindAt(mix, (i + 0.5) / 1000)
      counts.set(kind, (counts.get(kind) ?? 0) + 1)
    }
    expect(Object.fromEntries(counts)).toEqual({ "get-hot": 600, "get-cold": 100, range: 100, post: 150, batch: 50 })
  })
})

describe("requests", () => {
  it("posts records of about 300 bytes", () => {
    for (let i = 0; i < 100; i++) {
      const bytes = Buffer.byteLength(JSON.stringify(loadRecord()))
      expect(bytes).toBeGreaterThan(250)
      expect(bytes).toBeLessThan(350)
    }
  })

  it("reads each cold id once before reading any again", () => {
    const maker = requestMaker(["h"], ["a", "b", "c"])
    const paths = Array.from({ length: 7 }, () => maker.make("get-cold").path)
    expect(paths).toEqual(["/data/a", "/data/b", "/data/c", "/data/a", "/data/b", "/data/c", "/data/a"])
    expect(maker.coldWraps()).toBe(2)
  })

  it("makes every kind", () => {
    const maker = requestMaker(["h"], ["c"])
    const made = Object.fromEntries(KINDS.map((kind) => [kind, maker.make(kind)]))
    expect(made["get-hot"]).toEqual({ method: "GET", path: "/data/h" })
    expect(made.range.path).toMatch(/^\/data\?stream=[^&]+&limit=100$/)
    expect(made.post.method).toBe("POST")
    expect(made.post.path).toBe("/data")
    expect((JSON.parse(made.batch.body!) as { records: Array<unknown> }).records).toHaveLength(10)
  })
})
