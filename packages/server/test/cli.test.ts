/**
 * The command-line tool end to end against a real PostgreSQL database, and the
 * development key the server makes on the embedded database (and only there).
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { API_KEY, freshDatabase, postgresAvailable, sleep, startServer, strata } from "@strata/testing"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

describe("pnpm strata, on PostgreSQL", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>> | undefined
  let env: Record<string, string> = {}
  beforeAll(async () => {
    if (!(await postgresAvailable())) return
    db = await freshDatabase()
    env = { DATABASE_URL: db.url, AUTH_CACHE_TTL: "100ms" }
  }, 60_000)
  afterAll(async () => {
    await db?.drop()
  }, 60_000)

  it("migrates, makes a tenant and keys that work, lists them without secrets, revokes them", async (ctx) => {
    if (db === undefined) return ctx.skip()
    const migrated = await strata(["migrate"], env)
    expect(migrated.code).toBe(0)
    expect(migrated.stderr).toContain("tenants_and_api_keys")
    expect((await strata(["migrate"], env)).stderr).toContain("up to date")

    expect((await strata(["tenants", "create", "acme"], env)).code).toBe(0)
    const again = await strata(["tenants", "create", "acme"], env)
    expect(again.code).toBe(1)
    expect(again.stderr).toContain("already exists")
    const badName = await strata(["tenants", "create", "Not A Name"], env)
    expect(badName.code).toBe(1)
    expect(badName.stderr).toContain("lower-case letters") // the rule the /admin routes share
    expect((await strata(["tenants", "list"], env)).stdout).toMatch(/^acme {2}\d{4}-/m)
    const badScope = await strata(["keys", "create", "--tenant", "acme", "--scopes", "records:delete"], env)
    expect(badScope.code).toBe(1)
    expect(badScope.stderr).toContain("--scopes: expected a list of records:read, records:write, schemas:write, admin")

    const created = await strata(
      ["keys", "create", "--tenant", "acme", "--scopes", "records:read", "--expires", "90d"],
      env
    )
    expect(created.code).toBe(0)
    // The key alone on stdout, so `KEY=$(pnpm strata keys create …)` works.
    expect(created.stdout).toMatch(new RegExp(`^${API_KEY.source}\\n$`))
    const key = created.stdout.trim()
    const id = /key_[0-9a-f]{16}/.exec(created.stderr)![0]

    expect((await strata(["keys", "create", "--tenant", "nobody"], env)).code).toBe(1)
    expect((await strata(["keys", "create", "--tenant", "acme", "--scopes", "records:admin"], env)).code).toBe(1)
    expect((await strata(["keys", "create", "--tenant", "acme", "--expires", "soon"], env)).code).toBe(1)

    const listed = await strata(["keys", "list", "--tenant", "acme"], env)
    expect(listed.code).toBe(0)
    expect(listed.stdout).toContain(id)
    expect(listed.stdout).toContain("records:read")
    expect(listed.stdout).not.toMatch(API_KEY)
    const expires = new Date(Date.now() + 90 * 86_400_000).toISOString().slice(0, 10)
    expect(listed.stdout).toContain(expires)

    const server = await startServer(env, { withKey: false })
    try {
      const read = (k: string) => fetch(`${server.base}/data?stream=s`, { headers: { authorization: `Bearer ${k}` } })
      expect((await read(key)).status).toBe(200)
      const write = await fetch(`${server.base}/data`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ stream: "s", data: {} })
      })
      expect(write.status).toBe(403)
      // No development key with DATABASE_URL set.
      expect(server.output()).not.toMatch(API_KEY)

      const revoked = await strata(["keys", "revoke", id], env)
      expect(revoked.code).toBe(0)
      expect(revoked.stderr).toContain("AUTH_CACHE_TTL")
      await sleep(300)
      expect((await read(key)).status).toBe(401)
      expect((await strata(["keys", "list", "--tenant", "acme"], env)).stdout).toMatch(/\d{4}-\d\d-\d\dT[^ ]+ +-/)
      expect((await strata(["keys", "revoke", "key_0000000000000000"], env)).code).toBe(1)
    } finally {
      server.child.kill("SIGKILL")
    }
  }, 120_000)

  it("prints the effective configuration with secrets redacted", async (ctx) => {
    if (db === undefined) return ctx.skip()
    const url = new URL(db.url)
    url.password = "hunter2-secret"
    const shown = await strata(["config"], { DATABASE_URL: url.toString(), KAFKA_SASL_PASSWORD: "kafka-secret" })
    expect(shown.code).toBe(0)
    expect(shown.stdout).toContain("RATE_LIMIT_RPS=1000")
    expect(shown.stdout).toContain("KAFKA_SASL_PASSWORD=<redacted>")
    expect(shown.stdout).toMatch(/^DATABASE_URL=postgres:\/\/root:\*\*\*@/m)
    expect(shown.stdout).not.toContain("hunter2-secret")
    expect(shown.stdout).not.toContain("kafka-secret")
    const wrong = await strata(["config"], { RATE_LIMIT_BURST: "lots" })
    expect(wrong.code).toBe(78)
    expect(wrong.stderr).toContain(`Invalid RATE_LIMIT_BURST="lots": expected a whole number from 1 to 1000000`)
  }, 60_000)
})

describe("the development key", () => {
  it("is made and printed once on the embedded database, and works, with every scope", async () => {
    const dir = mkdtempSync(join(tmpdir(), "strata-devkey-"))
    try {
      const first = await startServer({ DATA_DIR: dir, DATABASE_URL: undefined }, { withKey: false })
      let key: string
      try {
        key = API_KEY.exec(first.output())![0]
        const res = await fetch(`${first.base}/data`, {
          method: "POST",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: JSON.stringify({ stream: "dev", data: {} })
        })
        expect(res.status).toBe(201)
        // Every scope: it registers schemas and administers tenants over HTTP.
        const auth = { authorization: `Bearer ${key}`, "content-type": "application/json" }
        const schema = await fetch(`${first.base}/streams/dev/schema`, {
          method: "PUT",
          headers: auth,
          body: JSON.stringify({ schema: { type: "object" } })
        })
        expect(schema.status).toBe(201)
        const tenants = await fetch(`${first.base}/admin/tenants`, { headers: auth })
        expect(((await tenants.json()) as { tenants: Array<{ name: string }> }).tenants.map((t) => t.name))
          .toContain("dev")
      } finally {
        first.child.kill("SIGTERM")
        await first.exited
      }
      const second = await startServer({ DATA_DIR: dir, DATABASE_URL: undefined, SHUTDOWN_DELAY: "0s" }, {
        withKey: false
      })
      try {
        expect(second.output()).not.toMatch(API_KEY)
        const page = await fetch(`${second.base}/data?stream=dev`, { headers: { authorization: `Bearer ${key}` } })
        expect(page.status).toBe(200)
      } finally {
        second.child.kill("SIGKILL")
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)
})
