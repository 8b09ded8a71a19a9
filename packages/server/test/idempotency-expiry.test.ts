import { afterAll, describe, expect, it } from "@effect/vitest"
import { Duration } from "effect"
import { makeTestApp, memoryDb } from "./support/TestApp.ts"

describe("Idempotency-Key expiry", () => {
  const app = makeTestApp(memoryDb, { idempotencyTtl: Duration.millis(50) })
  afterAll(() => app.dispose())

  it("forgets a key after IDEMPOTENCY_TTL: the same key then stores a new record", async () => {
    const headers = { "idempotency-key": "expiring" }
    const first = await (await app.json("/data", { stream: "exp", data: {} }, { headers })).json() as any
    await new Promise((resolve) => setTimeout(resolve, 80))
    const second = await app.json("/data", { stream: "exp", data: {} }, { headers })
    expect(second.status).toBe(201)
    expect(second.headers.get("idempotent-replayed")).toBeNull()
    expect(((await second.json()) as any).id).not.toBe(first.id)
  })
})
