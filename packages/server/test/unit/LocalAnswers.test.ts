/** The in-process answers: a bound in UTF-8 bytes (oldest written go first) and a TTL, on the owner's clock. */
import { describe, expect, it } from "vitest"
import { LocalAnswers } from "../../src/records/LocalAnswers.ts"

const OVERHEAD = 160 // per entry, with the key: as LocalAnswers counts it

describe("LocalAnswers", () => {
  it("gives back what was set, until its TTL on the given clock", () => {
    let now = 1_000
    const answers = new LocalAnswers(1_000_000, 500, () => now)
    answers.set("a", `{"id":"a"}`)
    expect(answers.get("a")).toBe(`{"id":"a"}`)
    now += 499
    expect(answers.get("a")).toBe(`{"id":"a"}`)
    now += 1
    expect(answers.get("a")).toBeUndefined()
    expect(answers.size).toBe(0)
  })

  it("counts UTF-8 bytes against the bound and drops the oldest written first", () => {
    const text = "é".repeat(100) // 200 bytes in UTF-8, 100 UTF-16 units
    const entry = 200 + 1 + OVERHEAD
    const answers = new LocalAnswers(entry * 2, 60_000, () => 0)
    answers.set("a", text)
    answers.set("b", text)
    expect(answers.size).toBe(entry * 2)
    answers.set("c", text)
    expect(answers.get("a")).toBeUndefined()
    expect([answers.get("b"), answers.get("c")]).toEqual([text, text])
    expect(answers.size).toBe(entry * 2)
  })

  it("keeps nothing larger than the whole bound, and replaces an entry in place", () => {
    const answers = new LocalAnswers(OVERHEAD + 10, 60_000, () => 0)
    answers.set("big", "x".repeat(100))
    expect(answers.get("big")).toBeUndefined()
    answers.set("k", "12345")
    answers.set("k", "123456789")
    expect(answers.get("k")).toBe("123456789")
    expect(answers.size).toBe(9 + 1 + OVERHEAD)
  })

  it("evicts by last write through long churn: a key set again counts from its new write", () => {
    const size = 1 + 4 + OVERHEAD // a one-character key and a four-byte answer
    const answers = new LocalAnswers(size * 3, 60_000, () => 0)
    answers.set("a", "aaaa")
    answers.set("b", "bbbb")
    answers.set("c", "cccc")
    answers.set("a", "AAAA") // now the newest: b goes first, then c
    answers.set("d", "dddd")
    expect([answers.get("a"), answers.get("b"), answers.get("c"), answers.get("d")])
      .toEqual(["AAAA", undefined, "cccc", "dddd"])
    // Thousands of writes, re-writes and evictions later, the bound and the order still hold.
    for (let i = 0; i < 5_000; i++) {
      answers.set(String.fromCharCode(97 + (i % 7)), String(1000 + i))
      if (i % 3 === 0) answers.set("z", "zzzz")
    }
    expect(answers.size).toBe(size * 3)
    // The last three distinct keys written: the key of i = 4998, "z" (also at i = 4998), the key of i = 4999.
    const last = [4998, 4999].map((i) => String.fromCharCode(97 + (i % 7)))
    expect(answers.get("z")).toBe("zzzz")
    for (const key of last) expect(answers.get(key)).toBeDefined()
    const others = "abcdefg".split("").filter((k) => !last.includes(k))
    expect(others.map((k) => answers.get(k))).toEqual(others.map(() => undefined))
  })
})
