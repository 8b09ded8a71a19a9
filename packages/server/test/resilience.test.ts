/**
 * README: Resilience: a database that goes away gives fast 503s and recovers without a
 * restart; load shedding and deadlines answer 503 with Retry-After.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { freshDatabase, makeTestApp, pgDb, postgresAvailable, problemOf, recordOf, sleep } from "@strata/testing"
import { Duration, Effect, Layer } from "effect"
import { connect, createServer, type Server, type Socket } from "node:net"
import { layerStorageMemory } from "../src/App.ts"
import { RecordStore } from "../src/records/RecordStore.ts"

/** A TCP proxy to PostgreSQL that a test can cut (drop every connection, refuse new ones) and restore. */
const makeProxy = async (target: { host: string; port: number }) => {
  const sockets = new Set<Socket>()
  let cut = false
  let refused = 0
  const server: Server = createServer((client) => {
    if (cut) {
      refused++
      return client.destroy()
    }
    const upstream = connect(target.port, target.host)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on("close", () => sockets.delete(s))
      s.on("error", () => s.destroy())
    }
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    port: (server.address() as { port: number }).port,
    cut: () => {
      cut = true
      for (const s of sockets) s.destroy()
    },
    restore: () => {
      cut = false
    },
    /** Connections attempted while cut. */
    refused: () => refused,
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

const available = await postgresAvailable()

describe.skipIf(!available)("when the database goes away", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let proxy: Awaited<ReturnType<typeof makeProxy>>
  beforeAll(async () => {
    db = await freshDatabase()
    proxy = await makeProxy({ host: "127.0.0.1", port: 5432 })
  })
  afterAll(async () => {
    await proxy?.close()
    await db?.drop()
  })

  it("answers 503 quickly while it is down, and recovers by itself when it is back", async () => {
    const url = new URL(db.url)
    url.port = String(proxy.port)
    const app = makeTestApp(pgDb(url.toString()), { dbTimeout: Duration.millis(500) })
    try {
      const stored = await recordOf(await app.json("/data", { stream: "s", data: {} }))
      expect(stored.id).toBeDefined()

      proxy.cut()
      const statuses: Array<number> = []
      for (let i = 0; i < 20; i++) {
        const res = await app.json("/data", { stream: "s", data: { i } })
        statuses.push(res.status)
        if (res.status === 503) expect(res.headers.get("retry-after")).not.toBeNull()
      }
      expect(statuses.every((s) => s === 503)).toBe(true)
      // The breaker opens after a few failures: later requests do not even try to connect.
      expect(proxy.refused()).toBeLessThan(10)
      expect(await (await app.request("/metrics")).text()).toMatch(
        /strata_circuit_breaker_state\{[^}]*dependency="database"[^}]*\} 2/
      )

      proxy.restore()
      let recovered = false
      for (let i = 0; i < 60 && !recovered; i++) {
        await sleep(250)
        recovered = (await app.json("/data", { stream: "s", data: { back: i } })).status === 201
      }
      expect(recovered).toBe(true)
      expect((await app.request(`/data/${stored.id}`)).status).toBe(200)
    } finally {
      await app.dispose()
    }
  }, 60_000)
})

/** In-memory stores whose reads take `ms`. */
const slowStorage = (ms: number) =>
  Layer.effect(
    RecordStore,
    Effect.gen(function*() {
      const db = yield* RecordStore
      return RecordStore.of({
        ...db,
        findByIds: (keys) => Effect.delay(db.findByIds(keys), Duration.millis(ms))
      })
    })
  ).pipe(Layer.provideMerge(layerStorageMemory))

describe("load shedding and deadlines", () => {
  const id = "019a5f0e-7c4b-7d1e-9a2f-3c4d5e6f7a8b"

  it("answers a request past REQUEST_TIMEOUT with 503 and Retry-After", async () => {
    const app = makeTestApp(slowStorage(300), { requestTimeout: Duration.millis(50) })
    try {
      const res = await app.request(`/data/${id}`)
      expect(res.status).toBe(503)
      expect(res.headers.get("retry-after")).toBe("1")
      expect((await problemOf(res)).type).toBe("/problems/unavailable")
    } finally {
      await app.dispose()
    }
  })

  it("sheds requests past MAX_IN_FLIGHT at once, but never health checks", async () => {
    const app = makeTestApp(slowStorage(200), { maxInFlight: 2 })
    try {
      const responses = await Promise.all([
        app.request(`/data/${id}`),
        app.request(`/data/${id}`),
        app.request(`/data/${id}`),
        app.request("/health/live")
      ])
      expect(responses.map((r) => r.status).toSorted()).toEqual([200, 404, 404, 503])
    } finally {
      await app.dispose()
    }
  })
})
