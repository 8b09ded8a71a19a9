/**
 * A bug answers 500 with a problem that carries only the request id: no
 * message, no stack, nothing from inside.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { ApiKeys } from "../src/auth/ApiKeys.ts"
import { IdempotencyStore } from "../src/idempotency/IdempotencyStore.ts"
import { Db } from "../src/records/RecordStore.ts"
import { SchemaRegistry } from "../src/schemas/SchemaRegistry.ts"
import { makeTestApp } from "./support/TestApp.ts"

const BrokenDb = Layer.effect(
  Db,
  Effect.gen(function*() {
    const db = yield* Db
    return Db.of({ ...db, findById: () => Effect.die(new Error("SELECT secret FROM pg_shadow")) })
  })
).pipe(Layer.provide(Db.layerMemory))

describe("internal errors", () => {
  const app = makeTestApp(
    Layer.mergeAll(BrokenDb, IdempotencyStore.layerMemory, ApiKeys.layerMemory, SchemaRegistry.layerMemory)
  )
  afterAll(() => app.dispose())

  it("answers a defect with a 500 problem that leaks nothing but the request id", async () => {
    const res = await app.request("/data/019a5f0e-7c4b-7d1e-9a2f-3c4d5e6f7a8b", {
      headers: { "x-request-id": "trace-me" }
    })
    expect(res.status).toBe(500)
    expect(res.headers.get("content-type")).toContain("application/problem+json")
    const text = await res.text()
    expect(text).not.toMatch(/secret|pg_shadow|Error|stack|at /)
    expect(JSON.parse(text)).toMatchObject({ type: "/problems/internal", status: 500, requestId: "trace-me" })
  })
})
