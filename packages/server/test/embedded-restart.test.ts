import { afterAll, describe, expect, it } from "@effect/vitest"
import { makeTestApp, pgliteDb, recordOf } from "@strata/testing"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

describe("embedded PGlite", () => {
  const dir = mkdtempSync(join(tmpdir(), "strata-restart-"))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("keeps the data in DATA_DIR across a restart", async () => {
    const first = makeTestApp(pgliteDb(dir))
    const stored = await recordOf(await first.json("/data", { stream: "durable", data: { kept: true } }))
    await first.dispose()

    const second = makeTestApp(pgliteDb(dir))
    const res = await second.request(`/data/${stored.id}`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual(stored)
    await second.dispose()
  }, 60_000)
})
