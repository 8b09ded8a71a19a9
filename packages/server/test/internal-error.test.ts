/**
 * A bug answers 500 with a problem that carries only the request id: no
 * message, no stack, nothing from inside.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { makeTestApp } from "@strata/testing"
import { Effect, Layer } from "effect"
import { layerStorageMemory } from "../src/App.ts"
import { RecordStore } from "../src/records/RecordStore.ts"

const BrokenDb = Layer.effect(
  RecordStore,
  Effect.gen(function*() {
    const db = yield* RecordStore
    return RecordStore.of({ ...db, findByIds: () => Effect.die(new Error("SELECT secret FROM pg_shadow")) })
  })
).pipe(Layer.provideMerge(layerStorageMemory))

describe("internal errors", () => {
  const app = makeTestApp(
    BrokenDb
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
