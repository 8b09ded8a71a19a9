/**
 * A record's data reads back exactly as it was sent (README: The API): numbers keep
 * every digit — `9007199254740993`, `12345678901234567890`,
 * `19.999999999999999999` — and strings every code point, through POST's
 * answer, `GET /data/{id}` and the list, on memory, PostgreSQL and PGlite, and
 * on both paths (the hot routes and the app). A number that cannot be kept is
 * a validation problem naming its path. Also: the write path's compiled check
 * (`isNewRecord`) agrees with decoding `NewRecord`.
 */
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { isNewRecord, NewRecord } from "@strata/domain"
import {
  acquireApp,
  ADMIN_URL,
  type Backend,
  type Db,
  describeBackends,
  makeSocketApp,
  makeTestApp,
  memory,
  pglite,
  postgres,
  postgresAvailable,
  type TestApp
} from "@strata/testing"
import { Effect, Exit, Redacted, Schema } from "effect"
import { Reactivity } from "effect/reactivity"
import fc from "fast-check"
import { CacheStore } from "../src/platform/cache/CacheStore.ts"
import { compactJsonb, jsonText, parseExact } from "../src/platform/json/ExactJson.ts"
import { parseStored } from "../src/records/RecordRows.ts"

/** The value of a JSON number's text, independent of how it is written: `1.50e1` and `15` agree. */
const valueOf = (text: string): string => {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text)!
  let digits = (m[2] + (m[3] ?? "")).replace(/^0+/, "")
  let exponent = BigInt(m[4] ?? 0) - BigInt((m[3] ?? "").length)
  while (digits.endsWith("0")) {
    digits = digits.slice(0, -1)
    exponent++
  }
  return digits === "" ? "0" : `${m[1]}${digits}e${exponent}`
}

/** Every number of a JSON text as its value, in document order. */
const numbersOf = (text: string): Array<string> => {
  const found: Array<string> = []
  JSON.parse(text, (_key, value, context?: { source?: string }) => {
    if (typeof value === "number") found.push(valueOf(context!.source!))
    return value
  })
  return found
}

const CASES = ["9007199254740993", "12345678901234567890", "19.999999999999999999", "-0.000000000000000000001"]

const numberText = fc.oneof(
  fc.constantFrom(...CASES, "0", "-0", "1.0", "1e21", "5e-324", "1.7976931348623157e308", "1.5e400"),
  fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }).map(String),
  fc.tuple(fc.bigInt({ min: -(10n ** 20n), max: 10n ** 20n }), fc.stringMatching(/^\d{1,30}$/))
    .map(([int, fraction]) => `${int}.${fraction}`),
  fc.tuple(fc.integer({ min: -9999, max: 9999 }), fc.integer({ min: -400, max: 400 }))
    .map(([mantissa, exponent]) => `${mantissa}e${exponent}`),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => JSON.stringify(n))
)

/** Strings PostgreSQL can store: any code point but NUL, no lone surrogates. */
const cleanString = fc.string({ unit: "grapheme", maxLength: 12 }).filter((s) => !s.includes("\u0000"))

/** A record's body as raw JSON text, and the numbers and strings in its data. */
const recordBody = fc.tuple(fc.array(numberText, { minLength: 1, maxLength: 6 }), cleanString, cleanString)
  .map(([numbers, name, text]) => ({ numbers, key: `k:${name}`, text }))
  .map(({ key, numbers, text }) => ({
    text: `{"stream":"exact","data":{"n":${numbers[0]},"list":[${numbers.join(",")}],${JSON.stringify(key)}:{"deep":${
      numbers.at(-1)
    }},"s":${JSON.stringify(text)}}}`,
    numbers: [numbers[0], ...numbers, numbers.at(-1)!].map(valueOf),
    key,
    string: text
  }))

describe("RecordJson", () => {
  it("parses and writes back every number with its value", () => {
    fc.assert(fc.property(recordBody, ({ numbers, text }) => {
      const parsed = parseExact(text)
      expect(parsed._tag).toBe("Parsed")
      const data = (parsed as { value: { data: unknown } }).value.data
      expect(numbersOf(jsonText(data)).toSorted()).toEqual(numbers.toSorted())
    }))
  })

  it("names the path of a number too large to keep", () => {
    expect(parseExact(`{"data":{"a":[1,{"b":1e99999}]}}`)).toEqual({ _tag: "Inexact", path: ["data", "a", 1, "b"] })
  })

  it("writes keys in jsonb's order: by UTF-8 length, then bytes", () => {
    expect(jsonText({ b: 1, 10: 2, 9: 3, aa: 4, é: 5 })).toBe(`{"9":3,"b":1,"10":2,"aa":4,"é":5}`)
    expect(jsonText(JSON.parse(`{"zz":{"__proto__":1,"a":[{"c":2,"b":{}}]},"y":null}`))).toBe(
      `{"y":null,"zz":{"a":[{"b":{},"c":2}],"__proto__":1}}`
    )
  })

  it("writes any parsed value as PostgreSQL's jsonb does: keys by UTF-8 length, then bytes, at every depth", () => {
    // The reference: sort each object's keys as jsonb does and build the text by hand.
    const bytes = (s: string) => Buffer.from(s)
    const byJsonb = (a: string, b: string) => bytes(a).length - bytes(b).length || Buffer.compare(bytes(a), bytes(b))
    const reference = (v: unknown): string =>
      v === null || typeof v !== "object"
        ? JSON.stringify(v)
        : Array.isArray(v)
        ? `[${v.map(reference).join(",")}]`
        : `{${
          Object.keys(v).toSorted(byJsonb).map((k) =>
            `${JSON.stringify(k)}:${reference((v as Record<string, unknown>)[k])}`
          ).join(",")
        }}`
    const key = fc.oneof(fc.string({ maxLength: 4 }), fc.constantFrom("__proto__", "0", "10", "9", "é", "aa"))
    const value = fc.letrec((tie) => ({
      json: fc.oneof(
        { depthSize: "small" },
        fc.constantFrom(null, true, false, 0, -1.5, "s"),
        fc.array(tie("json"), { maxLength: 4 }),
        fc.dictionary(key, tie("json"), { maxKeys: 6 })
      )
    })).json
    fc.assert(
      fc.property(value, (v) => {
        // Through JSON text, as records arrive: `__proto__` then is an own key.
        const parsed = JSON.parse(JSON.stringify(v))
        expect(jsonText(parsed)).toBe(reference(parsed))
      }),
      { numRuns: 500 }
    )
  })
})

describe.skipIf(!(await postgresAvailable()))("compactJsonb on PostgreSQL's jsonb text", () => {
  /** What PostgreSQL prints for each JSON text stored as jsonb, in one round trip. */
  const printed = (texts: ReadonlyArray<string>) =>
    Effect.runPromise(
      Effect.scoped(Effect.flatMap(
        PgClient.make({ url: Redacted.make(ADMIN_URL), maxConnections: 1 }),
        (sql) => sql<{ readonly t: string }>`SELECT x::jsonb::text AS t FROM unnest(${texts}::text[]) x`
      )).pipe(Effect.provide(Reactivity.layer))
    ).then((rows) => rows.map((r) => r.t))

  it("gives jsonText's bytes for every value whose numbers print alike, and declines the rest", async () => {
    const key = fc.oneof(cleanString, fc.constantFrom("a, b", "x: y", "\"q\"", "\\", "10", "9", "é"))
    const value = fc.letrec((tie) => ({
      json: fc.oneof(
        { depthSize: "small" },
        numberText,
        fc.constantFrom("1.50", "0.0000001", "0.000001", "100", "-0.5", "123456789012345", "1234567890123456"),
        fc.constantFrom("null", "true", "false"),
        fc.oneof(cleanString, fc.constantFrom(", ", ": ", "\t\n\u0001\u001f", "\\\"")).map((v) => JSON.stringify(v)),
        fc.array(tie("json"), { maxLength: 4 }).map((items) => `[${items.join(",")}]`),
        fc.array(fc.tuple(key, tie("json")), { maxLength: 5 })
          .map((entries) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`)
      )
    })).json
    const texts = fc.sample(value, { numRuns: 2_000, seed: 7 }).filter((text) => parseExact(text)._tag === "Parsed")
    const outputs = await printed(texts)
    let compacted = 0
    for (const output of outputs) {
      const expected = jsonText(parseStored(output))
      const compact = compactJsonb(output)
      if (compact !== undefined) {
        compacted++
        expect(compact).toBe(expected)
      }
    }
    // Most values take the fast path; those that do not are parsed, as before.
    expect(compacted).toBeGreaterThan(outputs.length / 2)
    expect(compacted).toBeLessThan(outputs.length)
  })

  it("writes numbers as jsonText does, and declines those JavaScript may write otherwise", () => {
    for (const text of ["[0.0000001]", "{\"a\": 1234567890123456}", "1e5", "0.1000000000000000"]) {
      expect(compactJsonb(text)).toBeUndefined()
    }
    expect(compactJsonb(`{"a": [1, 2.5, -0.000001, 20.50, 3.00, 0.0, -0, 100], "b, c": "d: 1.50"}`)).toBe(
      `{"a":[1,2.5,-0.000001,20.5,3,0,0,100],"b, c":"d: 1.50"}`
    )
  })

  it("skips strings whatever their escapes: a quote after backslashes ends one only after an even run", () => {
    const text = String.raw`{"a\\": "x\\\"y: 1.50, z\\", "b": [1.50, "\\\\"], "c\"": "\"2.50\""}`
    expect(compactJsonb(text)).toBe(String.raw`{"a\\":"x\\\"y: 1.50, z\\","b":[1.5,"\\\\"],"c\"":"\"2.50\""}`)
    expect(JSON.parse(compactJsonb(text)!)).toEqual(JSON.parse(text))
  })
})

describe("isNewRecord", () => {
  const decode = Schema.decodeUnknownExit(NewRecord)
  const candidate = fc.oneof(
    fc.record({
      stream: fc.oneof(fc.constantFrom("orders", "a.b-c_d", "", "Bad"), fc.string()),
      key: fc.oneof(fc.constant(null), fc.string({ maxLength: 300 }), fc.integer()),
      occurredAt: fc.oneof(
        fc.date({ min: new Date("1960-01-01"), max: new Date(Date.now() + 3 * 86_400_000), noInvalidDate: true })
          .map((d) => d.toISOString()),
        fc.constantFrom("2026-02-30T00:00:00Z", "2026-01-01T00:00:00", "yesterday", "2026-01-01T00:00:00+01:00")
      ),
      data: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }))),
      extra: fc.jsonValue({ maxDepth: 1 })
    }, { requiredKeys: [] }),
    fc.jsonValue({ maxDepth: 3 })
  )

  it("accepts exactly what decoding NewRecord accepts", () => {
    fc.assert(
      fc.property(candidate, (value) => {
        expect(isNewRecord(value)).toBe(Exit.isSuccess(decode(value, { errors: "all", onExcessProperty: "error" })))
      }),
      { numRuns: 2000 }
    )
  })
})

/** `makeApp`: the app on a backend's Db layer, in process or on a socket, with or without a cache. */
const describeRoundTrip = (
  name: string,
  of: ReadonlyArray<Backend<Db>>,
  makeApp: (db: Db) => TestApp | Promise<TestApp>
) =>
  describeBackends(name, of, (db) => acquireApp(() => makeApp(db)), ({ test }) => {
    const check = async (app: TestApp, body: { text: string; numbers: Array<string>; key: string; string: string }) => {
      const created = await app.json("/data", body.text)
      expect(created.status).toBe(201)
      const createdText = await created.text()
      const { id } = JSON.parse(createdText) as { id: string }
      const read = await (await app.request(`/data/${id}`)).text()
      const again = await (await app.request(`/data/${id}`)).text()
      for (const text of [createdText, read, again]) {
        expect(numbersOf(text).toSorted()).toEqual(body.numbers.toSorted())
        const data = JSON.parse(text).data
        expect(data.s).toBe(body.string)
        expect(Object.keys(data)).toContain(body.key)
      }
      expect(read).toBe(createdText) // one byte form, whichever level answered
      return id
    }

    test("keeps the known cases digit for digit", async (app) => {
      for (const n of CASES) {
        const created = await app.json("/data", `{"stream":"exact","data":{"n":${n}}}`)
        const text = await created.text()
        expect(numbersOf(text)).toEqual([valueOf(n)])
        const { id } = JSON.parse(text) as { id: string }
        expect(numbersOf(await (await app.request(`/data/${id}`)).text())).toEqual([valueOf(n)])
      }
      // Those a double cannot hold come back as they were written.
      const text = await (await app.json("/data", `{"stream":"exact","data":{"n":${CASES[1]}}}`)).text()
      expect(text).toContain(`"data":{"n":12345678901234567890}`)
    })

    test("keeps random numbers and strings through the answer, the read and the list", async (app) => {
      const ids: Array<string> = []
      await fc.assert(fc.asyncProperty(recordBody, async (body) => void ids.push(await check(app, body))), {
        numRuns: 40
      })
      const page = await (await app.request("/data?stream=exact&limit=1000")).text()
      const listed = JSON.parse(page).records as Array<{ id: string }>
      for (const id of ids) expect(listed.some((r) => r.id === id)).toBe(true)
      expect(numbersOf(page).length).toBeGreaterThan(ids.length)
    })

    test("answers a number it cannot keep with a validation problem naming it", async (app) => {
      const res = await app.json(
        "/data/batch",
        `{"records":[{"stream":"s","data":{}},{"stream":"s","data":{"x":1e-99999}}]}`
      )
      expect(res.status).toBe(400)
      expect(((await res.json()) as { errors: Array<{ path: string }> }).errors[0].path).toBe("records[1].data.x")
    })
  })

/** A cache that keeps nothing, so every read comes from the database. */
const noCache = CacheStore.layerMemory(0)

describeRoundTrip("exact round trip", [memory], (db) => makeTestApp(db.layer))
describeRoundTrip(
  "exact round trip over a socket with the hot routes",
  [memory, postgres],
  (db) => makeSocketApp(db.layer)
)
describeRoundTrip(
  "exact round trip, read from the database,",
  [postgres, pglite],
  (db) => makeTestApp(db.layer, { recordCacheBytes: 0 }, noCache)
)
