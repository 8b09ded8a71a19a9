/**
 * README: Filters — `GET /data` with `data.<path>=<op>.<value>`, on every backend:
 * typed and exact comparison, validation naming the parameter, pages that read
 * at most FILTER_SCAN_BUDGET rows, and cursors bound to the filter set.
 */
import { describe, expect } from "@effect/vitest"
import { acquireApp, backends, describeBackends, expectProblem, makeTestApp, pageOf } from "@strata/testing"
import { Result } from "effect"
import { parseExact } from "../src/platform/json/ExactJson.ts"
import { matchesAll, parseFilters } from "../src/records/Filters.ts"

interface Page {
  readonly records: ReadonlyArray<{ readonly id: string; readonly data: Record<string, unknown> }>
  readonly nextCursor: string | null
  readonly scanned?: number
}

const BUDGET = 25

/** Stores `data` (JSON texts, sent as written) in `stream`, one record each, a second apart (oldest first). */
const store = async (
  app: { readonly request: (path: string, init?: RequestInit) => Promise<Response> },
  stream: string,
  data: ReadonlyArray<string>,
  apartMs = 1000
) => {
  const body = `{"records":[${
    data.map((d, i) =>
      `{"stream":${JSON.stringify(stream)},"occurredAt":"${
        new Date(Date.UTC(2026, 6, 1) + i * apartMs).toISOString()
      }","data":${d}}`
    ).join(",")
  }]}`
  const res = await app.request("/data/batch", {
    method: "POST",
    body,
    headers: { "content-type": "application/json" }
  })
  expect(res.status, await res.clone().text()).toBe(201)
}

describeBackends(
  "GET /data with filters",
  backends,
  (db) => acquireApp(() => makeTestApp(db.layer, { filterScanBudget: BUDGET })),
  ({ test }) => {
    const get = async (app: { readonly request: (path: string) => Promise<Response> }, query: string) => {
      const res = await app.request(`/data?${query}`)
      expect(res.status, await res.clone().text()).toBe(200)
      return (await pageOf(res)) as unknown as Page
    }
    const amounts = (page: Page) => page.records.map((r) => r.data.amount)
    /** Every record a filtered query matches, page after page. */
    const all = async (app: { readonly request: (path: string) => Promise<Response> }, query: string) => {
      const found: Array<Page["records"][number]> = []
      let cursor: string | null = null
      do {
        const page: Page = await get(app, `${query}${cursor === null ? "" : `&cursor=${cursor}`}`)
        found.push(...page.records)
        cursor = page.nextCursor
      } while (cursor !== null)
      return found
    }

    describe("comparison", () => {
      test("compares a number literal numerically and a quoted one as a string", async (app) => {
        await store(app, "typed", [
          `{"amount":88}`,
          `{"amount":"88"}`,
          `{"amount":9}`,
          `{"amount":"9"}`,
          `{"other":1}`,
          `{"amount":null}`,
          `{"amount":[88]}`
        ])
        expect(amounts(await get(app, "stream=typed&order=asc&data.amount=gt.9"))).toEqual([88])
        expect(amounts(await get(app, "stream=typed&order=asc&data.amount=eq.88"))).toEqual([88])
        expect(amounts(await get(app, `stream=typed&order=asc&data.amount=eq."88"`))).toEqual(["88"])
        expect(amounts(await get(app, `stream=typed&order=asc&data.amount=gt."800"`))).toEqual(["88", "9"])
        expect(amounts(await get(app, "stream=typed&order=asc&data.amount=neq.9"))).toEqual([88])
        expect(amounts(await get(app, `stream=typed&order=asc&data.amount=in.(9,"88")`))).toEqual(["88", 9])
        expect(amounts(await get(app, "stream=typed&order=asc&data.amount=is.null"))).toEqual([null])
        expect((await get(app, "stream=typed&order=asc&data.amount=exists")).records).toHaveLength(6)
        expect(amounts(await get(app, "stream=typed&order=asc&data.amount=contains.%5B88%5D"))).toEqual([[88]])
      })

      test("compares numbers beyond a double's precision exactly", async (app) => {
        await store(app, "exact", [
          `{"amount":9007199254740993}`,
          `{"amount":9007199254740992}`,
          `{"amount":19.999999999999999999}`,
          `{"amount":20}`
        ])
        const page = await app.request("/data?stream=exact&order=asc&data.amount=gt.9007199254740992")
        const text = await page.text()
        expect(text).toContain(`"amount":9007199254740993`)
        expect(text).not.toContain(`"amount":9007199254740992`)
        expect(amounts(await get(app, "stream=exact&order=asc&data.amount=lt.20"))).toHaveLength(1)
        expect(await (await app.request("/data?stream=exact&data.amount=eq.9007199254740993")).text()).toContain(
          `"amount":9007199254740993`
        )
        expect(amounts(await get(app, "stream=exact&data.amount=eq.2e1"))).toEqual([20])
      })

      test("ANDs filters, reaches into nested objects, and quotes names holding dots", async (app) => {
        await store(app, "nested", [
          `{"customer":{"id":42},"amount":150,"a.b":1}`,
          `{"customer":{"id":42},"amount":50,"a.b":2}`,
          `{"customer":{"id":7},"amount":500}`
        ])
        expect(amounts(await get(app, "stream=nested&data.customer.id=eq.42&data.amount=gte.100"))).toEqual([150])
        expect(amounts(await get(app, `stream=nested&data."a.b"=eq.2`))).toEqual([50])
        expect(amounts(await get(app, "stream=nested&data.customer=contains.%7B%22id%22%3A7%7D"))).toEqual([500])
      })
    })

    describe("names", () => {
      test("a name that an SQL array literal would read as null, or that holds a quote, is still a name", async (app) => {
        await store(app, "names", [`{"NULL":1,"a\\"b":{"c,d":2}}`, `{"null":3}`])
        expect((await get(app, "stream=names&data.NULL=eq.1")).records).toHaveLength(1)
        expect((await get(app, "stream=names&data.null=eq.3")).records).toHaveLength(1)
        expect((await get(app, `stream=names&data."a\\"b".c,d=eq.2`)).records).toHaveLength(1)
      })
    })

    describe("bounded pages", () => {
      test("reads at most FILTER_SCAN_BUDGET rows a page, says how many, and goes on from where it stopped", async (app) => {
        // 60 records; only the 5th and the 55th match.
        await store(app, "sparse", Array.from({ length: 60 }, (_, i) => `{"n":${i},"hit":${i === 5 || i === 55}}`))
        const seen: Array<unknown> = []
        const scans: Array<number> = []
        let cursor: string | null = null
        let pages = 0
        do {
          const page: Page = await get(
            app,
            `stream=sparse&order=asc&limit=10&data.hit=eq.true${cursor === null ? "" : `&cursor=${cursor}`}`
          )
          seen.push(...page.records.map((r) => r.data.n))
          scans.push(page.scanned!)
          cursor = page.nextCursor
          pages += 1
        } while (cursor !== null && pages < 10)
        expect(seen).toEqual([5, 55])
        expect(scans.every((n) => n <= BUDGET)).toBe(true)
        expect(scans.reduce((a, b) => a + b, 0)).toBe(60)
        expect(pages).toBe(3)
      })

      test("walks partitions within the budget, newest first, and finds every match", async (app) => {
        // 90 records a day apart: three monthly partitions; every 20th matches.
        await store(app, "months", Array.from({ length: 90 }, (_, i) => `{"n":${i}}`), 86_400_000)
        const seen: Array<unknown> = []
        let cursor: string | null = null
        let pages = 0
        do {
          const page: Page = await get(
            app,
            `stream=months&limit=2&data.n=in.(0,20,40,60,80)${cursor === null ? "" : `&cursor=${cursor}`}`
          )
          expect(page.scanned).toBeLessThanOrEqual(BUDGET)
          seen.push(...page.records.map((r) => r.data.n))
          cursor = page.nextCursor
          pages += 1
        } while (cursor !== null && pages < 20)
        expect(seen).toEqual([80, 60, 40, 20, 0])
      })

      test("ends a full page with a cursor and the next page with none", async (app) => {
        await store(app, "dense", Array.from({ length: 7 }, (_, i) => `{"n":${i}}`))
        const first = await get(app, "stream=dense&order=asc&limit=3&data.n=gte.1")
        expect(first.records.map((r) => r.data.n)).toEqual([1, 2, 3])
        const second = await get(app, `stream=dense&order=asc&limit=3&data.n=gte.1&cursor=${first.nextCursor}`)
        expect(second.records.map((r) => r.data.n)).toEqual([4, 5, 6])
        expect(second.nextCursor).toBeNull()
      })

      test("refuses a cursor with another filter set, and an unfiltered cursor with filters", async (app) => {
        await store(app, "bound", Array.from({ length: 5 }, (_, i) => `{"n":${i}}`))
        const page = await get(app, "stream=bound&limit=2&data.n=gte.0")
        const other = await app.request(`/data?stream=bound&limit=2&data.n=gte.1&cursor=${page.nextCursor}`)
        const problem = await expectProblem(other, 400, "validation")
        expect(problem.errors?.[0]?.path).toBe("cursor")
        const plain = await get(app, "stream=bound&limit=2")
        await expectProblem(
          await app.request(`/data?stream=bound&limit=2&data.n=gte.0&cursor=${plain.nextCursor}`),
          400,
          "validation"
        )
        // The same filters in another order are the same set.
        const a = await get(app, "stream=bound&limit=2&data.n=gte.0&data.n=lt.9")
        expect((await get(app, `stream=bound&limit=2&data.n=lt.9&data.n=gte.0&cursor=${a.nextCursor}`)).records)
          .toHaveLength(2)
      })
    })

    describe("validation", () => {
      const cases: ReadonlyArray<readonly [string, string]> = [
        ["data.amount=like.4", "data.amount"],
        ["data.amount=gt.", "data.amount"],
        ["data.amount=gt.true", "data.amount"],
        ["data.amount=eq.01", "data.amount"],
        ["data.amount=eq.null", "data.amount"],
        [`data.amount=eq."open`, "data.amount"],
        ["data.amount=in.1,2", "data.amount"],
        [`data.amount=in.(${Array.from({ length: 101 }, (_, i) => i).join(",")})`, "data.amount"],
        ["data.tags=contains.%7Bnope", "data.tags"],
        ["data.a..b=eq.1", "data.a..b"],
        [
          `data.${Array.from({ length: 33 }, () => "a").join(".")}=eq.1`,
          `data.${Array.from({ length: 33 }, () => "a").join(".")}`
        ],
        [Array.from({ length: 21 }, (_, i) => `data.f${i}=eq.1`).join("&"), "data.f20"]
      ]
      for (const [query, parameter] of cases) {
        test(`answers 400 naming ${parameter.slice(0, 24)} for ${query.slice(0, 40)}`, async (app) => {
          const problem = await expectProblem(
            await app.request(`/data?stream=orders&${query}`),
            400,
            "validation"
          )
          expect(problem.errors?.map((e) => e.path)).toContain(parameter)
        })
      }
    })

    describe("paths the stream's schema forbids", () => {
      test("are a 400 naming the parameter; allowed paths filter as usual", async (app) => {
        const registrar = await app.createKey({ scopes: ["schemas:write"] })
        const schema = {
          type: "object",
          additionalProperties: false,
          properties: {
            amount: { type: "number" },
            customer: { type: "object", additionalProperties: false, properties: { id: { type: "integer" } } },
            extra: { type: "object" }
          }
        }
        const put = await app.json("/streams/strict/schema", { schema }, { method: "PUT" }, registrar)
        expect(put.status).toBe(201)
        await store(app, "strict", [`{"amount":5,"customer":{"id":1}}`])
        const problem = await expectProblem(
          await app.request("/data?stream=strict&data.amont=eq.5&data.customer.name=eq.x&data.amount=eq.5"),
          400,
          "validation"
        )
        expect(problem.errors?.map((e) => e.path).toSorted()).toEqual(["data.amont", "data.customer.name"])
        expect(amounts(await get(app, "stream=strict&data.amount=eq.5&data.customer.id=eq.1"))).toEqual([5])
        expect((await get(app, "stream=strict&data.extra.anything=exists")).records).toEqual([])
        // The feed of that stream refuses it too.
        for (const path of ["/streams/strict/changes?data.amont=eq.5", "/changes?stream=strict&data.amont=eq.5"]) {
          const feed = await expectProblem(await app.request(path), 400, "validation")
          expect(feed.errors?.map((e) => e.path)).toEqual(["data.amont"])
        }
      })
    })

    describe("the change feed", () => {
      interface FeedPage {
        readonly changes: ReadonlyArray<{ readonly data: Record<string, unknown>; readonly position: string }>
        readonly nextPosition: string
      }
      /** Every change a feed URL answers from the earliest position, page after page. */
      const drain = async (app: { readonly request: (path: string) => Promise<Response> }, path: string) => {
        const found: Array<FeedPage["changes"][number]> = []
        let after = "earliest"
        for (let i = 0; i < 50; i++) {
          const res = await app.request(`${path}${path.includes("?") ? "&" : "?"}after=${after}&limit=4`)
          expect(res.status, await res.clone().text()).toBe(200)
          const page = (await res.json()) as FeedPage
          found.push(...page.changes)
          if (page.nextPosition === after) break
          after = page.nextPosition
        }
        return found
      }

      test("takes the same filters on /streams/{stream}/changes and /changes", async (app) => {
        await store(app, "feed-f", Array.from({ length: 12 }, (_, i) => `{"n":${i},"big":90071992547409${90 + i}}`))
        const n = (changes: ReadonlyArray<{ readonly data: Record<string, unknown> }>) => changes.map((c) => c.data.n)
        expect(n(await drain(app, "/streams/feed-f/changes?data.n=gte.9"))).toEqual([9, 10, 11])
        expect(n(await drain(app, "/changes?stream=feed-f&data.big=gt.9007199254740992"))).toEqual([
          3,
          4,
          5,
          6,
          7,
          8,
          9,
          10,
          11
        ])
        expect(n(await drain(app, "/streams/feed-f/changes?data.n=in.(1,2)&data.big=exists"))).toEqual([1, 2])
        const problem = await expectProblem(
          await app.request("/streams/feed-f/changes?data.n=between.1"),
          400,
          "validation"
        )
        expect(problem.errors?.map((e) => e.path)).toEqual(["data.n"])
      })
    })

    describe("the server's answer is the filter applied to the same records", () => {
      test("on random records and random filters", async (app) => {
        const values = ["1", "2", "10", "-3", "2.5", "9007199254740993", `"1"`, `"b"`, `"10"`, "true", "null", "[1,2]"]
        const records = Array.from({ length: 40 }, (_, i) => {
          const v = values[(i * 7) % values.length]
          const w = values[(i * 5 + 3) % values.length]
          return i % 9 === 0 ? `{"w":${w}}` : `{"v":${v},"w":${w},"i":${i}}`
        })
        await store(app, "property", records)
        const parsed = records.map((r) => (parseExact(r) as { readonly value: unknown }).value)
        const ops = [
          "eq.1",
          "gt.1",
          "gte.2",
          "lt.10",
          "lte.2.5",
          `eq."1"`,
          `gt."1"`,
          "neq.1",
          "in.(1,2,\"b\")",
          "is.null",
          "exists",
          "eq.true",
          "gt.9007199254740992",
          "contains.1"
        ]
        for (const op of ops) {
          for (const field of ["v", "w"]) {
            const query = `data.${field}=${op}`
            const filters = Result.getOrThrow(parseFilters(new URLSearchParams(query)))
            const expected = parsed.filter((d) => matchesAll(filters, d)).length
            const found = await all(app, `stream=property&limit=1000&${query}`)
            expect({ query, n: found.length }).toEqual({ query, n: expected })
          }
        }
      }, 60_000)
    })
  }
)
