/**
 * A key's Redis Cluster slot (platform/cache/KeySlot.ts), against the values of
 * the cluster specification and of `CLUSTER KEYSLOT` (redis-cluster.test.ts
 * checks more against a live cluster).
 */
import { describe, expect, it } from "@effect/vitest"
import { keySlot } from "../../src/platform/cache/KeySlot.ts"

describe("keySlot", () => {
  it("is CRC16 (XMODEM) of the key modulo 16384", () => {
    expect(keySlot("123456789")).toBe(0x31c3) // the specification's check value
    expect(keySlot("foo")).toBe(12182)
    expect(keySlot("")).toBe(0)
  })

  it("hashes only a non-empty hash tag, the first one", () => {
    expect(keySlot("{user1000}.following")).toBe(keySlot("user1000"))
    expect(keySlot("{user1000}.followers")).toBe(keySlot("user1000"))
    expect(keySlot("foo{}{bar}")).toBe(keySlot("foo{}{bar}")) // an empty first tag: the whole key
    expect(keySlot("foo{}{bar}")).not.toBe(keySlot("bar"))
    expect(keySlot("foo{{bar}}zap")).toBe(keySlot("{bar"))
    expect(keySlot("foo{bar}{zap}")).toBe(keySlot("bar"))
  })

  it("hashes a non-ASCII key's UTF-8 bytes", () => {
    expect(keySlot("\u00e9")).toBe(10180) // CLUSTER KEYSLOT é on Redis 7.0
  })
})
