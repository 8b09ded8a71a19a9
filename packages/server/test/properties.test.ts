/**
 * Property-based tests over the whole HTTP API (README: The API): random bodies
 * (near-valid records, random JSON, broken JSON, random bytes), methods, paths,
 * query strings and headers. Whatever arrives, the answer is never a 5xx, an
 * error is a problem document that leaks nothing, every response has a request
 * id, the app keeps answering, and exactly the records answered 201 are stored
 * as sent — nothing from a rejected request, nothing twice from a replayed one.
 * Run on the in-memory Db and on a real PostgreSQL.
 */
import { PgClient } from "@effect/sql-pg"
import { expect } from "@effect/vitest"
import { STREAM_PATTERN } from "@strata/domain"
import { acquireApp, describeBackends, makeTestApp, memory, postgres, type TestApp } from "@strata/testing"
import { Effect, Redacted } from "effect"
import { Reactivity } from "effect/reactivity"
import fc from "fast-check"

/** Runs per property: enough to find the usual suspects, small enough for a 2-core CI. */
const RUNS = 200

const STREAMS = ["prop-a", "prop-b", "prop-c"]
const IDEMPOTENCY_KEYS = ["k-1", "k-2", "k-3"]

// Strings of any code point, with a bias to the code units storage chokes on:
// NUL and lone surrogates (fast-check's own units never make the latter).
const trickyUnit = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom("\u0000", "\ud800", "\udbff", "\udc00", "\udfff", "\u202e", "\ufeff") },
  { weight: 2, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) }
)
const anyString = (maxLength = 20) => fc.string({ unit: trickyUnit, maxLength })
const anyJson = fc.jsonValue({ stringUnit: trickyUnit, maxDepth: 4 })

const protoKeys = fc.constantFrom("__proto__", "constructor", "prototype", "toString", "hasOwnProperty")
const dataObject = fc.oneof(
  fc.dictionary(fc.oneof(anyString(), protoKeys), anyJson, { maxKeys: 5 }),
  fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer(), fc.boolean()), { maxKeys: 5 })
)

const recentInstant = fc.date({ min: new Date("2020-01-01"), max: new Date(), noInvalidDate: true })
  .map((d) => d.toISOString())

/** A record the API must accept. */
const validRecord = fc.record({
  stream: fc.constantFrom(...STREAMS),
  key: fc.oneof(fc.constant(null), fc.string({ minLength: 1, maxLength: 20 })),
  occurredAt: recentInstant,
  data: fc.dictionary(fc.oneof(fc.string(), protoKeys), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 })
}, { requiredKeys: ["stream", "data"] })

/** One way to spoil a record: a hostile value in a field, a field missing, or one too many. */
const spoil = fc.oneof(
  fc.record({ stream: fc.oneof(anyString(70), anyJson) }),
  fc.record({ key: fc.oneof(anyString(300), fc.integer(), fc.constant("")) }),
  fc.record({
    occurredAt: fc.oneof(
      anyString(),
      fc.constantFrom("2026-02-30T00:00:00Z", "2026-01-01T00:00:00", "1969-12-31T23:59:59Z", "+275760-09-13T00:00:00Z"),
      fc.date({ noInvalidDate: true }).map((d) => d.toISOString())
    )
  }),
  fc.record({ data: fc.oneof(anyJson, dataObject) }),
  fc.record({ data: fc.dictionary(anyString(4), anyString(4), { minKeys: 1, maxKeys: 3 }) }),
  fc.record({ extra: anyJson }),
  fc.constantFrom({ stream: undefined }, { data: undefined })
)

const spoiled = (record: object, spoils: ReadonlyArray<object>) =>
  Object.fromEntries(
    Object.entries(Object.assign({}, record, ...spoils) as Record<string, unknown>).filter(([, v]) => v !== undefined)
  )

/** A valid record, or one spoiled in one way (most often) or several. */
const nearRecord = fc.oneof(
  { weight: 2, arbitrary: validRecord },
  { weight: 3, arbitrary: fc.tuple(validRecord, spoil).map(([record, one]) => spoiled(record, [one])) },
  {
    weight: 1,
    arbitrary: fc.tuple(validRecord, fc.array(spoil, { minLength: 2, maxLength: 3 })).map(([record, spoils]) =>
      spoiled(record, spoils)
    )
  }
)

const jsonText = (value: unknown) => JSON.stringify(value) ?? "null"

/** A body as bytes or text: records, random JSON, JSON cut or spliced, random bytes. */
const body = fc.oneof(
  { weight: 4, arbitrary: nearRecord.map(jsonText) },
  {
    weight: 3,
    arbitrary: fc.record({
      records: fc.array(fc.oneof({ weight: 5, arbitrary: validRecord }, { weight: 1, arbitrary: nearRecord }), {
        maxLength: 6
      })
    }).map(jsonText)
  },
  { weight: 1, arbitrary: anyJson.map(jsonText) },
  {
    weight: 1,
    arbitrary: fc.tuple(nearRecord.map(jsonText), fc.nat(), anyString(3)).map(([text, at, insert]) =>
      text.slice(0, at % (text.length + 1)) + insert + text.slice((at % (text.length + 1)) + 1)
    )
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) }
)

const contentType = fc.oneof(
  { weight: 12, arbitrary: fc.constant("application/json") },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "application/problem+json",
      "application/json; charset=utf-8",
      "application/json; charset=latin1",
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "application/json;;;charset",
      "*/*"
    )
  },
  { weight: 1, arbitrary: fc.constant(undefined) }
)

// Header values a client can send: no CR, LF or NUL; latin-1 at most.
const headerValue = fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)) })
const someHeaders = fc.record({
  "idempotency-key": fc.oneof(fc.constantFrom(...IDEMPOTENCY_KEYS), headerValue),
  "if-none-match": fc.oneof(headerValue, fc.constant("*")),
  "x-request-id": headerValue,
  traceparent: fc.oneof(headerValue, fc.constant("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")),
  accept: headerValue,
  "accept-encoding": headerValue
}, { requiredKeys: [] })
/** Mostly none, so that most requests get past the headers to the body. */
const headers = fc.oneof({ weight: 3, arbitrary: fc.constant({}) }, { weight: 1, arbitrary: someHeaders })

/** Percent-encoded; a URL cannot carry a lone surrogate, so those become U+FFFD as in a browser. */
const uriComponent = (s: string) => encodeURIComponent(s.toWellFormed())

const UUID = /^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$/i

// Query values with any code unit, percent-encoded, sometimes raw and malformed ("%zz").
const queryValue = fc.oneof(
  anyString().map(uriComponent),
  fc.constantFrom("%00", "%zz", "%ED%A0%80", "%", "a%2", "1e3", "-1", "0", "1000", "1001", "asc", "desc"),
  fc.constantFrom(...STREAMS)
)
const query = fc.array(
  fc.tuple(
    fc.constantFrom("stream", "key", "from", "to", "order", "limit", "cursor", "__proto__", "x"),
    queryValue
  ),
  { maxLength: 6 }
).map((pairs) => pairs.length === 0 ? "" : `?${pairs.map(([k, v]) => `${k}=${v}`).join("&")}`)

const path = fc.oneof(
  fc.constantFrom("/data", "/data/batch", "/data/", "/data//", "/health/ready", "/health/live", "/nope", "/"),
  fc.uuid().map((id) => `/data/${id}`),
  fc.webSegment().map((s) => `/data/${s}`),
  fc.webPath()
)

const method = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom("GET", "POST") },
  { weight: 1, arbitrary: fc.constantFrom("PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "QUERY", "FOO") }
)

/** Streams named anywhere in a body: where a wrongly stored record would have to be. */
const streamsIn = (bytes: string | Uint8Array): Array<string> => {
  let value: unknown
  try {
    value = JSON.parse(typeof bytes === "string" ? bytes : new TextDecoder().decode(bytes))
  } catch {
    return []
  }
  const found: Array<string> = []
  const stack = [value]
  while (stack.length > 0) {
    const node = stack.pop()
    if (node === null || typeof node !== "object") continue
    for (const [k, v] of Object.entries(node)) {
      if (k === "stream" && typeof v === "string" && STREAM_PATTERN.test(v)) found.push(v)
      stack.push(v)
    }
  }
  return found
}

interface Ledger {
  /** Ids answered 201, by stream. */
  readonly acknowledged: Map<string, Set<string>>
  /** Every valid stream name a request mentioned. */
  readonly mentioned: Set<string>
}

const STACK_OR_SQL = /\bat \S+ \(|\bat (?:file|node):|node_modules|\.ts:\d|SqlError|SELECT |INSERT |pg_/

/** Sends one request and checks what holds for every answer; records what a 201 stored. */
/** The records a POST body asks to store, as the client wrote them (none when it is not JSON). */
const recordsIn = (bytes: RequestInit["body"]): Array<{ key?: unknown; data?: unknown }> => {
  try {
    // A string body goes out as UTF-8, where a lone surrogate becomes U+FFFD.
    const value = JSON.parse(
      typeof bytes === "string" ? bytes.toWellFormed() : new TextDecoder().decode(bytes as Uint8Array)
    )
    return Array.isArray(value?.records) ? value.records : [value]
  } catch {
    return []
  }
}

const exchange = async (app: TestApp, ledger: Ledger, method: string, target: string, init: RequestInit) => {
  const res = await app.request(target, { ...init, method })
  const text = await res.text()
  const context = `${method} ${target} → ${res.status} ${text.slice(0, 300)}`
  expect(res.status, context).toBeLessThan(500)
  expect(res.headers.get("x-request-id"), context).not.toBeNull()
  if (res.status >= 400 && method !== "HEAD") {
    expect(res.headers.get("content-type"), context).toContain("application/problem+json")
    expect(JSON.parse(text).type, context).toMatch(/^\/problems\/[a-z-]+$/)
    expect(text, context).not.toMatch(STACK_OR_SQL)
  }
  if (res.status === 201) {
    const answer = JSON.parse(text)
    const records: Array<{ id: string; stream: string }> = answer.records ?? [answer]
    const replayed = res.headers.get("idempotent-replayed") === "true"
    // What was stored is what was sent, character for character.
    const sent = recordsIn(init.body ?? undefined)
    expect(records.map((r: any) => [r.key, r.data]), context).toEqual(sent.map((r) => [r.key ?? null, r.data]))
    for (const r of records) {
      const ids = ledger.acknowledged.get(r.stream) ?? new Set()
      // A replay answers what the first request stored, and stores nothing new.
      if (replayed) expect(ids.has(r.id), context).toBe(true)
      ids.add(r.id)
      ledger.acknowledged.set(r.stream, ids)
    }
  }
  return res.status
}

/** Every id stored in `stream`, paging through GET /data. */
const storedIds = async (app: TestApp, stream: string) => {
  const ids: Array<string> = []
  let cursor: string | null = null
  do {
    const after: string = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`
    const page = await (await app.request(`/data?stream=${stream}&limit=1000${after}`)).json() as {
      records: Array<{ id: string }>
      nextCursor: string | null
    }
    ids.push(...page.records.map((r) => r.id))
    cursor = page.nextCursor
  } while (cursor !== null)
  return ids
}

/** On PostgreSQL, the rows of the records table, counted past the app. */
const countRecords = (url: string) =>
  Effect.runPromise(
    Effect.scoped(Effect.flatMap(
      PgClient.make({ url: Redacted.make(url), maxConnections: 1 }),
      (sql) => Effect.map(sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM records`, ([row]) => row.n)
    )).pipe(Effect.provide(Reactivity.layer))
  )

describeBackends(
  "the HTTP API",
  [memory, postgres],
  (db) => Effect.map(acquireApp(() => makeTestApp(db.layer)), (app) => ({ app, url: db.url })),
  ({ test }) => {
    const ledger: Ledger = { acknowledged: new Map(), mentioned: new Set(STREAMS) }
    const property = (title: string, run: (app: TestApp) => Promise<void>) =>
      test(title, async ({ app }) => {
        await run(app)
        expect((await app.request("/health/live")).status).toBe(200)
      }, 120_000)

    property("POST bodies of any shape never get a 5xx", async (app) => {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom("/data", "/data/batch"),
          body,
          contentType,
          headers,
          async (target, bytes, type, extra) => {
            for (const s of streamsIn(bytes)) ledger.mentioned.add(s)
            await exchange(app, ledger, "POST", target, {
              headers: { ...extra, ...(type === undefined ? {} : { "content-type": type }) },
              body: bytes as NonNullable<RequestInit["body"]>
            })
          }
        ),
        { numRuns: RUNS * 3 }
      )
    })

    property("any method, path, query string and headers never get a 5xx", async (app) => {
      await fc.assert(
        fc.asyncProperty(method, path, query, headers, fc.option(body), async (m, p, q, h, b) => {
          const withBody = b !== null && m !== "GET" && m !== "HEAD"
          if (withBody) { for (const s of streamsIn(b)) ledger.mentioned.add(s) }
          await exchange(app, ledger, m, `${p}${q}`, {
            headers: { ...h, ...(withBody ? { "content-type": "application/json" } : {}) },
            ...(withBody ? { body: b as NonNullable<RequestInit["body"]> } : {})
          })
        }),
        { numRuns: RUNS }
      )
    })

    /** An id answered 201 so far, upper-cased at times (ids are case-insensitive), or a fresh UUID. */
    const known = () =>
      fc.tuple(fc.nat(), fc.boolean()).map(([i, upper]) => {
        const ids = [...ledger.acknowledged.values()].flatMap((set) => [...set])
        const id = ids.length === 0 ? crypto.randomUUID() : ids[i % ids.length]!
        return upper ? id.toUpperCase() : id
      })

    property("GET /data/{id} finds every record answered 201; any other id is a 404 or 400", async (app) => {
      await fc.assert(
        fc.asyncProperty(fc.oneof(known(), fc.uuid(), fc.webSegment(), anyString(40).map(uriComponent)), async (id) => {
          const status = await exchange(app, ledger, "GET", `/data/${id}`, {})
          if ([...ledger.acknowledged.values()].some((ids) => ids.has(id.toLowerCase()))) expect(status).toBe(200)
          else if (UUID.test(id)) expect(status).toBe(404)
          else expect([400, 404]).toContain(status)
        }),
        { numRuns: RUNS }
      )
    })

    test("stores exactly the records answered 201", async ({ app, url }) => {
      let total = 0
      for (const stream of ledger.mentioned) {
        const stored = await storedIds(app, stream)
        expect(stored.toSorted(), stream).toEqual([...(ledger.acknowledged.get(stream) ?? [])].toSorted())
        total += stored.length
      }
      // The properties did store something, so the comparison above means something.
      expect(total).toBeGreaterThan(0)
      if (url !== undefined) expect(await countRecords(url)).toBe(total)
    }, 60_000)
  }
)
