import { describe, expect, it } from "@effect/vitest"
import { memoryDb, scopedTestApp } from "@strata/testing"
import { Duration, Effect } from "effect"
import { TestClock } from "effect/testing"

describe("Idempotency-Key expiry", () => {
  // The store runs on the test's clock: time passes by TestClock.adjust, not by waiting.
  it.effect("forgets a key after IDEMPOTENCY_TTL: the same key then stores a new record", () =>
    Effect.gen(function*() {
      const app = yield* scopedTestApp(memoryDb, { idempotencyTtl: Duration.millis(50) })
      const post = Effect.promise(async () => {
        const res = await app.json("/data", { stream: "exp", data: {} }, { headers: { "idempotency-key": "expiring" } })
        return { res, body: (await res.json()) as { id: string } }
      })
      const first = yield* post
      yield* TestClock.adjust("80 millis")
      const second = yield* post
      expect(second.res.status).toBe(201)
      expect(second.res.headers.get("idempotent-replayed")).toBeNull()
      expect(second.body.id).not.toBe(first.body.id)
    }))
})
