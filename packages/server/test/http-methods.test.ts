/**
 * Methods (RFC 9110): a known path asked with a method it does not answer is a
 * 405 problem with `Allow`; HEAD answers wherever GET does; unknown paths stay 404.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { makeTestApp, memoryDb } from "@strata/testing"

describe("HTTP methods", () => {
  const app = makeTestApp(memoryDb)
  afterAll(() => app.dispose())

  it("answers a method the route does not take with 405 and Allow", async () => {
    const cases: Array<[string, string, string]> = [
      ["DELETE", "/data/019a5f0e-7c4b-7d1e-9a2f-3c4d5e6f7a8b", "GET, HEAD"],
      ["PUT", "/data", "GET, POST, HEAD"],
      ["PATCH", "/data/batch", "POST"],
      ["POST", "/health/ready", "GET, HEAD"],
      ["DELETE", "/streams/orders/schema", "GET, PUT, HEAD"],
      ["GET", "/streams/orders/schema/check", "POST"],
      ["DELETE", "/admin/tenants/acme/keys", "GET, POST, HEAD"],
      ["GET", "/admin/keys/key_1/revoke", "POST"]
    ]
    for (const [method, path, allow] of cases) {
      const res = await app.request(path, { method, body: method === "GET" ? null : "{}" })
      expect(res.status, `${method} ${path}`).toBe(405)
      expect(res.headers.get("allow")).toBe(allow)
      expect(res.headers.get("content-type")).toContain("application/problem+json")
      const problem = (await res.json()) as { type: string; requestId: string }
      expect(problem.type).toBe("/problems/method-not-allowed")
      expect(problem.requestId).toBe(res.headers.get("x-request-id"))
    }
  })

  it("answers HEAD where GET answers, with GET's status and headers", async () => {
    const stored = (await (await app.json("/data", { stream: "heads", data: {} })).json()) as { id: string }
    const get = await app.request(`/data/${stored.id}`)
    const head = await app.request(`/data/${stored.id}`, { method: "HEAD" })
    expect(head.status).toBe(200)
    expect(head.headers.get("etag")).toBe(get.headers.get("etag"))
    expect((await app.request("/health/live", { method: "HEAD" })).status).toBe(200)
    expect((await app.request("/data/019a5f0e-7c4b-7d1e-9a2f-3c4d5e6f7a8b", { method: "HEAD" })).status).toBe(404)
  })

  it("keeps unknown paths a 404", async () => {
    const res = await app.request("/nothing-here", { method: "DELETE" })
    expect(res.status).toBe(404)
    expect(((await res.json()) as { type: string }).type).toBe("/problems/not-found")
  })
})
