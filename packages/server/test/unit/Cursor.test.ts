/**
 * Page cursors (Cursor.ts): what one encodes decodes back for the same query,
 * and anything else — another secret, another scope, a changed byte — is refused.
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { type CursorScope, makeCursorCodec } from "../../src/records/Cursor.ts"

const codec = makeCursorCodec("a secret every replica shares")
const scope: CursorScope = { tenant: "acme", stream: "orders", key: undefined, order: "asc" }
const position = { occurredAt: new Date("2026-02-28T23:59:59.999Z"), id: "0194f5d2-0000-7000-8000-000000000000" }

const scopeArb = fc.record({
  tenant: fc.string({ minLength: 1 }),
  stream: fc.string({ minLength: 1 }),
  key: fc.option(fc.string(), { nil: undefined }),
  order: fc.constantFrom("asc" as const, "desc" as const)
})
const positionArb = fc.record({
  occurredAt: fc.date({ min: new Date(0), max: new Date("9999-12-31T23:59:59.999Z"), noInvalidDate: true }),
  id: fc.uuid()
})

describe("makeCursorCodec", () => {
  it("decodes what it encoded, for any scope and position", () => {
    fc.assert(fc.property(scopeArb, positionArb, (s, p) => {
      expect(codec.decode(s, codec.encode(s, p))).toEqual(p)
    }))
  })

  it("issues cursors that are safe in a query string", () => {
    expect(codec.encode(scope, position)).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
  })

  it("refuses a cursor replayed against another tenant, stream, key or order", () => {
    const cursor = codec.encode(scope, position)
    expect(codec.decode(scope, cursor)).toEqual(position)
    for (
      const other of [
        { ...scope, tenant: "globex" },
        { ...scope, stream: "orders2" },
        { ...scope, key: "k" },
        { ...scope, key: "" },
        { ...scope, order: "desc" as const }
      ]
    ) {
      expect(codec.decode(other, cursor)).toBeUndefined()
    }
  })

  it("refuses a cursor signed with another secret", () => {
    const forged = makeCursorCodec("another secret").encode(scope, position)
    expect(codec.decode(scope, forged)).toBeUndefined()
  })

  it("refuses a cursor whose payload was changed, even when it still parses", () => {
    const [, mac] = codec.encode(scope, position).split(".")
    const later = Buffer.from(JSON.stringify([position.occurredAt.getTime() + 1, position.id])).toString("base64url")
    expect(codec.decode(scope, `${later}.${mac}`)).toBeUndefined()
  })

  it("refuses any single changed character", () => {
    const cursor = codec.encode(scope, position)
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    fc.assert(fc.property(
      fc.nat({ max: cursor.length - 1 }),
      fc.constantFrom(...alphabet),
      (at, c) => {
        const tampered = cursor.slice(0, at) + c + cursor.slice(at + 1)
        // base64url ignores the low bits of a final character: such a change leaves the bytes as they were.
        const sameBytes = tampered.split(".").map((part) =>
          Buffer.from(part, "base64url").toString("hex")
        ).join(".") ===
          cursor.split(".").map((part) => Buffer.from(part, "base64url").toString("hex")).join(".")
        fc.pre(tampered !== cursor && !sameBytes)
        expect(codec.decode(scope, tampered)).toBeUndefined()
      }
    ))
  })

  it("refuses what is not a cursor at all", () => {
    const cursor = codec.encode(scope, position)
    for (const bad of ["", ".", "abc", `${cursor}.extra`, cursor.split(".")[0], `.${cursor.split(".")[1]}`]) {
      expect(codec.decode(scope, bad)).toBeUndefined()
    }
  })
})
