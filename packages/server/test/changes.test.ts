/**
 * README: Change feed, the contract of positions and pages, on every backend
 * (in memory, PostgreSQL, PGlite): a position on every write answer and list
 * page, pages in commit order with their records as GET /data/{id} answers
 * them, `earliest` and `now`, nextPosition on every page, the problems of bad
 * positions (400), expired ones (410 with earliestPosition), and read your
 * writes. What needs real processes and transactions held open is in
 * feed-order.test.ts; the Server-Sent Events tail in feed-stream.test.ts.
 */
import { describe, expect } from "@effect/vitest"
import { acquireApp, backends, describeBackends, expectProblem, makeTestApp, type TestApp } from "@strata/testing"
import { Effect } from "effect"
import { ChangeLog } from "../src/records/ChangeLog.ts"

interface ChangeView {
  readonly id: string
  readonly stream: string
  readonly key: string | null
  readonly data: Record<string, unknown>
  readonly position: string
}
interface Page {
  readonly changes: ReadonlyArray<ChangeView>
  readonly nextPosition: string
}

const post = async (app: TestApp, body: unknown, key?: string) => {
  const res = await app.json("/data", body, undefined, key)
  expect(res.status).toBe(201)
  return { record: await res.json() as { id: string }, position: res.headers.get("strata-position")! }
}

const page = async (app: TestApp, path: string, key?: string): Promise<Page> => {
  const res = await app.request(path, undefined, key)
  const text = await res.text()
  expect({ status: res.status, text }).toMatchObject({ status: 200 })
  return JSON.parse(text) as Page
}

/** Every change after `after`, page by page. */
const drain = async (app: TestApp, base: string, after: string, limit = 2) => {
  const all: Array<ChangeView> = []
  let position = after
  for (let i = 0; i < 1000; i++) {
    const p = await page(app, `${base}${base.includes("?") ? "&" : "?"}after=${position}&limit=${limit}`)
    all.push(...p.changes)
    expect(p.nextPosition).toBeTypeOf("string")
    if (p.changes.length === 0) return { all, position: p.nextPosition }
    position = p.nextPosition
  }
  throw new Error("the feed never ended")
}

describeBackends("change feed", backends, (db) => acquireApp(() => makeTestApp(db.layer)), ({ test }) => {
  describe("positions on writes", () => {
    test("POST /data, POST /data/batch and a replayed Idempotency-Key answer carry Strata-Position", async (app) => {
      const one = await post(app, { stream: "pos", data: { n: 1 } })
      expect(one.position).toMatch(/^[\w-]{8}\.[0-9a-f]+\.[0-9a-f]+\.[\w-]{16}$/)
      const batch = await app.json("/data/batch", { records: [{ stream: "pos", data: { n: 2 } }] })
      expect(batch.status).toBe(201)
      expect(batch.headers.get("strata-position")).toMatch(/\./)
      const init = { headers: { "idempotency-key": "feed-once" } }
      const first = await app.json("/data", { stream: "pos", data: { n: 3 } }, init)
      const again = await app.json("/data", { stream: "pos", data: { n: 3 } }, init)
      expect(again.headers.get("idempotent-replayed")).toBe("true")
      expect(again.headers.get("strata-position")).toBe(first.headers.get("strata-position"))
    })

    test("a list page carries the feed's head: a tail from it misses nothing written after the page", async (app) => {
      await post(app, { stream: "head", data: { n: 1 } })
      const list = await app.request("/data?stream=head")
      expect(list.status).toBe(200)
      const head = list.headers.get("strata-position")!
      const later = await post(app, { stream: "head", data: { n: 2 } })
      const { all } = await drain(app, "/streams/head/changes", head)
      expect(all.map((c) => c.id)).toContain(later.record.id)
    })
  })

  describe("GET /changes and GET /streams/{stream}/changes", () => {
    test("answer every record once, in commit order, as GET /data/{id} answers it plus its position", async (app) => {
      const start = (await page(app, "/changes?after=now")).nextPosition
      const ids: Array<string> = []
      for (let i = 0; i < 5; i++) ids.push((await post(app, { stream: "order", key: "k", data: { i } })).record.id)
      const batch = await app.json("/data/batch", {
        records: [{ stream: "order", data: { i: 5 } }, { stream: "order-b", data: { i: 6 } }]
      })
      ids.push(...((await batch.json()) as { records: Array<{ id: string }> }).records.map((r) => r.id))
      const { all } = await drain(app, "/changes", start)
      expect(all.map((c) => c.id)).toEqual(ids)
      const single = await app.request(`/data/${ids[0]}`)
      const { position, ...record } = all[0]
      expect(record).toEqual(await single.json())
      expect(position).toMatch(/\./)
      // Each change's position resumes right after it.
      const { all: rest } = await drain(app, "/changes", all[2].position)
      expect(rest.map((c) => c.id)).toEqual(ids.slice(3))
    })

    test("a stream's feed holds only its records; stream= filters the tenant's feed", async (app) => {
      const start = (await page(app, "/changes?after=now")).nextPosition
      const a = await post(app, { stream: "filter-a", data: {} })
      const b = await post(app, { stream: "filter-b", data: {} })
      const c = await post(app, { stream: "filter-c", data: {} })
      expect((await drain(app, "/streams/filter-b/changes", start)).all.map((x) => x.id)).toEqual([b.record.id])
      expect((await drain(app, "/changes?stream=filter-a&stream=filter-c", start)).all.map((x) => x.id)).toEqual([
        a.record.id,
        c.record.id
      ])
    })

    test("nextPosition is on every page, an empty one too, and moves to the head past other streams", async (app) => {
      const empty = await page(app, "/streams/nothing-here/changes?after=now")
      expect(empty.changes).toEqual([])
      await post(app, { stream: "elsewhere", data: {} })
      const after = await page(app, `/streams/nothing-here/changes?after=${empty.nextPosition}`)
      expect(after.changes).toEqual([])
      // The filtered feed moved past the other stream's record: its next read starts after it.
      const tenantWide = await page(app, `/changes?after=${after.nextPosition}`)
      expect(tenantWide.changes).toEqual([])
    })

    test("earliest starts at the oldest kept change; now at the head", async (app) => {
      const first = await page(app, "/changes?after=earliest&limit=1")
      expect(first.changes).toHaveLength(1)
      const byDefault = await page(app, "/changes?limit=1")
      expect(byDefault.changes[0].id).toBe(first.changes[0].id)
      expect((await page(app, "/changes?after=now")).changes).toEqual([])
    })

    test("another tenant sees none of these records, and a tenant's position means nothing to another", async (app) => {
      const mine = await post(app, { stream: "secret", data: {} })
      const other = await app.createKey({ tenant: "other-feed" })
      const theirs = await page(app, "/changes?after=earliest&limit=1000", other)
      expect(theirs.changes.map((c) => c.id)).not.toContain(mine.record.id)
      const problem = await expectProblem(
        await app.request(`/changes?after=${mine.position}`, undefined, other),
        400,
        "validation"
      )
      expect(problem.errors?.[0]?.path).toBe("after")
    })

    test("a malformed or altered position is a 400 naming the parameter", async (app) => {
      const { position } = await post(app, { stream: "bad", data: {} })
      const altered = position.replace(
        /\.([0-9a-f]+)\./,
        (_, xid: string) => `.${(BigInt(`0x${xid}`) + 1n).toString(16)}.`
      )
      for (const bad of ["x", "a.b.c.d", altered, "%20", "0".repeat(65)]) {
        await expectProblem(await app.request(`/changes?after=${encodeURIComponent(bad)}`), 400, "validation")
      }
      await expectProblem(await app.request("/changes?limit=0"), 400, "validation")
      await expectProblem(await app.request("/changes?stream=Bad%20Name"), 400, "validation")
    })

    test("a position older than retention kept is a 410 naming earliestPosition, which works", async (app) => {
      const old = await post(app, { stream: "expiry", data: { n: 1 } })
      // Retention with its cut in the future: every change so far is expired.
      await app.run(Effect.flatMap(ChangeLog, (log) => log.expire(new Date(Date.now() + 60_000))))
      const problem = await expectProblem(await app.request(`/changes?after=${old.position}`), 410, "position-expired")
      const earliest = (problem as unknown as { earliestPosition: string }).earliestPosition
      const newer = await post(app, { stream: "expiry", data: { n: 2 } })
      const { all } = await drain(app, "/streams/expiry/changes", earliest)
      expect(all.map((c) => c.id)).toEqual([newer.record.id])
      expect((await page(app, "/streams/expiry/changes?after=earliest")).changes.map((c) => c.id)).toEqual([
        newer.record.id
      ])
    })
  })

  describe("read your writes (Strata-Position on a read)", () => {
    test("a read with a write's position sees the write; a foreign or malformed one is a 400", async (app) => {
      const { position, record } = await post(app, { stream: "ryw", data: { n: 1 } })
      const read = await app.request(`/data/${record.id}`, { headers: { "strata-position": position } })
      expect(read.status).toBe(200)
      const list = await app.request("/data?stream=ryw", { headers: { "strata-position": position } })
      expect(list.status).toBe(200)
      const feed = await page(app, "/streams/ryw/changes?after=earliest")
      expect(feed.changes.map((c) => c.id)).toContain(record.id)
      const withPosition = await app.request("/streams/ryw/changes?after=earliest", {
        headers: { "strata-position": position }
      })
      expect(((await withPosition.json()) as Page).changes.map((c) => c.id)).toContain(record.id)
      for (const path of [`/data/${record.id}`, "/data?stream=ryw", "/changes"]) {
        const problem = await expectProblem(
          await app.request(path, { headers: { "strata-position": "nonsense" } }),
          400,
          "validation"
        )
        expect(problem.errors?.[0]?.path).toBe("strata-position")
      }
    })
  })
})
