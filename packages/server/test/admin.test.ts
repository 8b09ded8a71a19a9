/**
 * Administration over HTTP (README: The API): tenants and keys for keys with the
 * `admin` scope, with the command-line tool's rules, on memory and PostgreSQL.
 */
import { expect } from "@effect/vitest"
import {
  acquireApp,
  apiKeyOf,
  createdKeyOf,
  describeBackends,
  makeTestApp,
  memory,
  postgres,
  problemOf,
  tenantListOf,
  tenantOf,
  type TestApp
} from "@strata/testing"
import { randomBytes } from "node:crypto"

describeBackends("administration", [memory, postgres], (db) => acquireApp(() => makeTestApp(db.layer)), ({ test }) => {
  const adminKey = (app: TestApp) => app.createKey({ tenant: "ops", scopes: ["admin"] })
  const type = async (res: Response) => ((await res.json()) as { type: string }).type

  test("401 without a key, 403 with a key lacking admin", async (app) => {
    expect((await app.request("/admin/tenants", undefined, null)).status).toBe(401)
    const plain = await app.createKey()
    const res = await app.request("/admin/tenants", undefined, plain)
    expect(res.status).toBe(403)
    expect(await type(res)).toBe("/problems/forbidden")
    expect((await app.json("/admin/tenants", { name: "x" }, {}, plain)).status).toBe(403)
  })

  test("creates and lists tenants; a duplicate is 409, a bad name 400", async (app) => {
    const key = await adminKey(app)
    const name = `acme-${randomBytes(3).toString("hex")}`
    const created = await app.json("/admin/tenants", { name }, {}, key)
    expect(created.status).toBe(201)
    expect((await tenantOf(created)).name).toBe(name)
    const again = await app.json("/admin/tenants", { name }, {}, key)
    expect(again.status).toBe(409)
    expect(await type(again)).toBe("/problems/conflict")
    const bad = await app.json("/admin/tenants", { name: "Not Valid!" }, {}, key)
    expect(bad.status).toBe(400)
    expect((await problemOf(bad)).errors?.[0].path).toBe("name")
    expect((await app.json("/admin/tenants", "{", {}, key)).status).toBe(400)
    const listed = await tenantListOf(await app.request("/admin/tenants", undefined, key))
    expect(listed.tenants.map((t) => t.name)).toContain(name)
  })

  test("makes a key that works, lists it without its secret and revokes it", async (app) => {
    const key = await adminKey(app)
    const tenant = `shop-${randomBytes(3).toString("hex")}`
    await app.json("/admin/tenants", { name: tenant }, {}, key)
    const made = await app.json(
      `/admin/tenants/${tenant}/keys`,
      { scopes: ["records:write"], expiresIn: "30d", rateLimitRps: 5, rateLimitBurst: 10 },
      {},
      key
    )
    expect(made.status).toBe(201)
    const { key: info, secret } = await createdKeyOf(made)
    expect(secret).toMatch(/^strata_/)
    expect(info).toMatchObject({ tenant, scopes: ["records:write"], rateLimit: { rps: 5, burst: 10 } })
    expect(Date.parse(info.expiresAt!)).toBeGreaterThan(Date.now() + 29 * 86_400_000)

    const stored = await app.json("/data", { stream: "s", data: {} }, {}, secret)
    expect(stored.status).toBe(201)

    const listed = await (await app.request(`/admin/tenants/${tenant}/keys`, undefined, key)).text()
    expect(listed).toContain(info.id)
    expect(listed).not.toContain(secret)

    const revoked = await app.request(`/admin/keys/${info.id}/revoke`, { method: "POST" }, key)
    expect(revoked.status).toBe(200)
    expect(Date.parse((await apiKeyOf(revoked)).revokedAt!)).toBeGreaterThan(0)
  })

  test("the CLI's rules: unknown scopes, a bad lifetime, a bad rate limit, an unknown tenant or key", async (app) => {
    const key = await adminKey(app)
    const path = "/admin/tenants/ops/keys"
    const scopes = await app.json(path, { scopes: ["records:delete"] }, {}, key)
    expect(scopes.status).toBe(400)
    expect((await problemOf(scopes)).errors?.[0].path).toBe("scopes")
    expect((await app.json(path, { expiresIn: "soon" }, {}, key)).status).toBe(400)
    expect((await app.json(path, { rateLimitRps: 0 }, {}, key)).status).toBe(400)
    expect((await app.json("/admin/tenants/nobody/keys", {}, {}, key)).status).toBe(404)
    expect((await app.request("/admin/tenants/nobody/keys", undefined, key)).status).toBe(404)
    expect((await app.request("/admin/keys/key_0000/revoke", { method: "POST" }, key)).status).toBe(404)
  })
})
