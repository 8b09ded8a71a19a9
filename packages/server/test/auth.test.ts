/**
 * Authentication and tenants (README: The API): the status of every `/data` route for
 * every kind of key, tenant isolation (reads, lists, idempotency keys, events,
 * and inside one group-commit batch), revocation within AUTH_CACHE_TTL, and the
 * OpenAPI document declaring the scheme. Run in memory and on real PostgreSQL.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  acquireApp,
  type Db,
  describeBackends,
  expectProblem,
  freshDatabase,
  makeTestApp,
  memory,
  memoryDb,
  pgDb,
  postgres,
  postgresAvailable,
  scopedTestApp,
  type TestApp
} from "@strata/testing"
import { Duration, Effect } from "effect"
import { TestClock } from "effect/testing"
import { ApiKeys } from "../src/auth/ApiKeys.ts"

const record = { stream: "auth", key: "k", occurredAt: "2026-11-24T10:00:00.000Z", data: { n: 1 } }

interface Route {
  readonly name: string
  readonly scope: "records:read" | "records:write"
  readonly send: (app: TestApp, key: string | null) => Promise<Response>
  /** The status when the key is right. */
  readonly ok: number
}

const routes = (existingId: () => string): ReadonlyArray<Route> => [
  { name: "POST /data", scope: "records:write", ok: 201, send: (app, key) => app.json("/data", record, {}, key) },
  {
    name: "POST /data/batch",
    scope: "records:write",
    ok: 201,
    send: (app, key) => app.json("/data/batch", { records: [record] }, {}, key)
  },
  {
    name: "GET /data/{id}",
    scope: "records:read",
    ok: 200,
    send: (app, key) => app.request(`/data/${existingId()}`, {}, key)
  },
  { name: "GET /data", scope: "records:read", ok: 200, send: (app, key) => app.request("/data?stream=auth", {}, key) }
]

/**
 * On a backend whose clock is "test", the revocation test runs on the TestClock
 * (verified keys read the Clock they are built with); on "real" it waits out AUTH_CACHE_TTL.
 */
interface Subject {
  readonly app: TestApp
  /** Keys of tenant acme (both scopes, read, write, expired, revoked) and of globex (other). */
  readonly keys: Readonly<Record<"both" | "read" | "write" | "expired" | "revoked" | "other", string>>
  /** A record of acme's. */
  readonly id: string
}

const setup = (db: Db) =>
  Effect.flatMap(
    acquireApp(() => makeTestApp(db.layer, { authCacheTtl: Duration.millis(300) })),
    (app) =>
      Effect.promise(async (): Promise<Subject> => {
        const keys = {
          both: await app.createKey({ tenant: "acme" }),
          read: await app.createKey({ tenant: "acme", scopes: ["records:read"] }),
          write: await app.createKey({ tenant: "acme", scopes: ["records:write"] }),
          expired: await app.createKey({ tenant: "acme", expiresAt: new Date(Date.now() - 1000) }),
          revoked: await app.createKey({ tenant: "acme" }),
          other: await app.createKey({ tenant: "globex" })
        }
        const revokedId = (await app.run(ApiKeys.use((k) => k.listKeys("acme")))).at(-1)!.id
        await app.run(ApiKeys.use((k) => k.revokeKey(revokedId)))
        const id = ((await (await app.json("/data", record, {}, keys.both)).json()) as { id: string }).id
        return { app, keys, id }
      })
  )

/**
 * On a backend whose clock is "test", the revocation test runs on the TestClock
 * (verified keys read the Clock they are built with); on "real" it waits out AUTH_CACHE_TTL.
 */
describeBackends("auth", [memory, postgres], setup, (suite, { clock }) => {
  const test = (title: string, f: (app: TestApp) => Promise<void>) => suite.test(title, (s) => f(s.app))
  // Read in the tests, once the suite's setup made them.
  const keys = () => suite.subject()!.keys
  const id = () => suite.subject()!.id

  for (const route of routes(id)) {
    describe(route.name, () => {
      test("without a key: 401 with WWW-Authenticate: Bearer", async (app) => {
        const res = await route.send(app, null)
        expect(res.headers.get("www-authenticate")).toMatch(/^Bearer /)
        await expectProblem(res, 401, "unauthorized")
      })
      test("with a key that is not ours, or malformed: 401", async (app) => {
        for (const key of ["strata_" + "A".repeat(43), "nonsense", "strata_"]) {
          const res = await route.send(app, key)
          expect(res.headers.get("www-authenticate")).toContain("error=\"invalid_token\"")
          await expectProblem(res, 401, "unauthorized")
        }
      })
      test("with a revoked or an expired key: 401", async (app) => {
        await expectProblem(await route.send(app, keys().revoked), 401, "unauthorized")
        await expectProblem(await route.send(app, keys().expired), 401, "unauthorized")
      })
      test(`without the ${route.scope} scope: 403`, async (app) => {
        const other = route.scope === "records:read" ? keys().write : keys().read
        await expectProblem(await route.send(app, other), 403, "forbidden")
      })
      test(`with the ${route.scope} scope: ${route.ok}`, async (app) => {
        const scoped = route.scope === "records:read" ? keys().read : keys().write
        expect((await route.send(app, scoped)).status).toBe(route.ok)
        expect((await route.send(app, keys().both)).status).toBe(route.ok)
      })
    })
  }

  test("health, metrics and the OpenAPI document need no key", async (app) => {
    for (const path of ["/health/live", "/health/ready", "/metrics", "/openapi.json"]) {
      expect((await app.request(path, {}, null)).status).toBe(200)
    }
  })

  test("another tenant's record is a 404 and never in its lists", async (app) => {
    await expectProblem(await app.request(`/data/${id()}`, {}, keys().other), 404, "not-found")
    const page = (await (await app.request("/data?stream=auth", {}, keys().other)).json()) as {
      records: Array<unknown>
    }
    expect(page.records).toEqual([])
    const own = (await (await app.request("/data?stream=auth", {}, keys().both)).json()) as {
      records: Array<{ id: string }>
    }
    expect(own.records.map((r) => r.id)).toContain(id())
  })

  test("an Idempotency-Key is the tenant's own: the same key elsewhere stores a new record", async (app) => {
    const headers = { "idempotency-key": "order-7" }
    const first = await app.json("/data", record, { headers }, keys().both)
    const second = await app.json("/data", record, { headers }, keys().other)
    expect(first.status).toBe(201)
    expect(second.status).toBe(201)
    expect(second.headers.get("idempotent-replayed")).toBeNull()
    expect(((await second.json()) as { id: string }).id).not.toBe(((await first.json()) as { id: string }).id)
  })

  test("tenants writing at once, coalesced into shared transactions, each see only their own", async (app) => {
    const stream = "concurrent"
    const writes = Array.from(
      { length: 30 },
      (_, i) =>
        app.json("/data", { stream, data: { i } }, {}, i % 2 === 0 ? keys().both : keys().other).then(async (res) => {
          expect(res.status).toBe(201)
          return { tenantKey: i % 2 === 0 ? keys().both : keys().other, id: ((await res.json()) as { id: string }).id }
        })
    )
    const stored = await Promise.all(writes)
    for (const key of [keys().both, keys().other]) {
      const page = (await (await app.request(`/data?stream=${stream}&limit=1000`, {}, key)).json()) as {
        records: Array<{ id: string }>
      }
      const expected = stored.filter((s) => s.tenantKey === key).map((s) => s.id).toSorted()
      expect(page.records.map((r) => r.id).toSorted()).toEqual(expected)
    }
  })

  const revoked = "a revoked key stops working within AUTH_CACHE_TTL"
  if (clock === "real") {
    test(revoked, async (app) => {
      const key = await app.createKey({ tenant: "acme" })
      expect((await app.request(`/data/${id()}`, {}, key)).status).toBe(200)
      const keyId = (await app.run(ApiKeys.use((k) => k.listKeys("acme")))).at(-1)!.id
      await app.run(ApiKeys.use((k) => k.revokeKey(keyId)))
      await Effect.runPromise(Effect.sleep(Duration.millis(400)))
      await expectProblem(await app.request(`/data/${id()}`, {}, key), 401, "unauthorized")
    })
  } else {
    // An app of its own, built on the test's clock, with a record of the same tenant to read.
    it.effect(revoked, () =>
      Effect.gen(function*() {
        const app = yield* scopedTestApp(memoryDb, { authCacheTtl: Duration.millis(300) })
        const id = yield* Effect.promise(async () => {
          const writer = await app.createKey({ tenant: "acme" })
          return ((await (await app.json("/data", record, {}, writer)).json()) as { id: string }).id
        })
        const key = yield* Effect.promise(() => app.createKey({ tenant: "acme" }))
        expect((yield* Effect.promise(() => app.request(`/data/${id}`, {}, key))).status).toBe(200)
        const keyId = (yield* Effect.promise(() => app.run(ApiKeys.use((k) => k.listKeys("acme"))))).at(-1)!.id
        yield* Effect.promise(() => app.run(ApiKeys.use((k) => k.revokeKey(keyId))))
        yield* TestClock.adjust("400 millis")
        yield* Effect.promise(async () => expectProblem(await app.request(`/data/${id}`, {}, key), 401, "unauthorized"))
      }))
  }
})

describe("last-used times", () => {
  it("are written in the background, not per request, and flushed on shutdown", async (ctx) => {
    if (!(await postgresAvailable())) return ctx.skip()
    const db = await freshDatabase()
    try {
      const first = makeTestApp(pgDb(db.url))
      const key = await first.createKey({ tenant: "used" })
      expect((await first.request("/data?stream=s", {}, key)).status).toBe(200)
      const [before] = await first.run(ApiKeys.use((k) => k.listKeys("used")))
      expect(before.lastUsedAt).toBeNull()
      await first.dispose()
      const second = makeTestApp(pgDb(db.url))
      const [after] = await second.run(ApiKeys.use((k) => k.listKeys("used")))
      await second.dispose()
      expect(after.lastUsedAt).not.toBeNull()
    } finally {
      await db.drop()
    }
  }, 60_000)
})

/** What the test reads of the OpenAPI document: the bearer scheme and each operation's security. */
interface OpenApiDoc {
  readonly components: {
    readonly securitySchemes: { readonly bearer: { readonly type: string; readonly scheme: string } }
  }
  readonly paths: Readonly<Record<string, Readonly<Record<string, { readonly security?: ReadonlyArray<unknown> }>>>>
}

describe("the OpenAPI document", () => {
  it("declares the bearer scheme on every /data, /changes, /streams and /admin operation and on no other", async () => {
    const app = makeTestApp(memoryDb)
    try {
      const doc = (await (await app.request("/openapi.json", {}, null)).json()) as OpenApiDoc
      const scheme = doc.components.securitySchemes.bearer
      expect(scheme.type).toBe("http")
      expect(scheme.scheme.toLowerCase()).toBe("bearer") // case-insensitive (RFC 7235)
      for (const [path, operations] of Object.entries(doc.paths)) {
        for (const operation of Object.values(operations)) {
          expect(operation.security ?? []).toEqual(
            /^\/(?:data|changes|streams|admin)/.test(path) ? [{ bearer: [] }] : []
          )
        }
      }
    } finally {
      await app.dispose()
    }
  })
})
