/**
 * The record cache (README: Cache) against the real Redis at 127.0.0.1:6379 (a key
 * prefix per run) and in memory: hits and misses, coalescing, negative caching,
 * per-tenant keys, TTL, and a Redis that dies mid-test.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import {
  cacheBackends,
  describeBackends,
  makeTestApp,
  memoryDb,
  readinessOf,
  recordOf,
  REDIS_URL,
  redisAvailable,
  sleep,
  startRedisServer
} from "@strata/testing"
import { Duration, Effect, Layer, ManagedRuntime, Option, Redacted } from "effect"
import { TestClock } from "effect/testing"
import { Redis } from "ioredis"
import { CacheStore } from "../src/platform/cache/CacheStore.ts"
import { AppConfig } from "../src/platform/config/AppConfig.ts"
import { ReadReplicas } from "../src/platform/sql/ReadReplicas.ts"
import { MemoryTables } from "../src/records/MemoryTables.ts"
import { RecordCache, recordCacheKey } from "../src/records/RecordCache.ts"
import { makeRecordId } from "../src/records/RecordId.ts"
import { RecordStore } from "../src/records/RecordStore.ts"

/** A RecordStore that counts its reads by id (statements, each for any number of ids), to see coalescing. */
const countingDb = (reads: { n: number }) =>
  Layer.effect(
    RecordStore,
    Effect.gen(function*() {
      const db = yield* RecordStore
      return RecordStore.of({
        ...db,
        findByIds: (keys) =>
          Effect.suspend(() => {
            reads.n++
            return Effect.delay(db.findByIds(keys), "20 millis")
          })
      })
    })
  ).pipe(Layer.provideMerge(RecordStore.layerMemory), Layer.provide(MemoryTables.layer))

const record = {
  id: makeRecordId(Date.parse("2026-01-01T00:00:00Z")),
  stream: "s",
  key: null,
  occurredAt: "2026-01-01T00:00:00.000Z",
  ingestedAt: "2026-01-01T00:00:00.001Z",
  data: { a: 1 }
}

/** A record's cached answer, as the handlers remember it. */
const answerOf = (id: string) => ({ id, text: JSON.stringify({ ...record, id }) })
const idOf = (answer: Option.Option<string>): string => JSON.parse(Option.getOrThrow(answer)).id

const ttls = { cacheNegativeTtl: Duration.millis(300), cacheTtl: Duration.millis(600) }

/** Until `key` is in the shared cache: RecordCache writes there on the next macrotask. */
const untilShared = (key: string) =>
  Effect.gen(function*() {
    const cache = yield* CacheStore
    while (Option.isNone((yield* Effect.orDie(cache.getMany([key])))[0])) {
      yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
    }
  })

/**
 * `clock`: "test" runs the TTL test on the TestClock (the in-memory cache and
 * LocalAnswers read the Clock they are built with); "real" waits, as Redis
 * keeps its own time.
 */
describeBackends(
  "record cache",
  cacheBackends,
  (cache) =>
    Effect.gen(function*() {
      const reads = { n: 0 }
      const runtime = yield* Effect.acquireRelease(
        Effect.sync(() =>
          ManagedRuntime.make(
            RecordCache.layer.pipe(
              Layer.provide(ReadReplicas.layerNone),
              Layer.provideMerge(Layer.merge(countingDb(reads), cache)),
              Layer.provide(AppConfig.layerWith(ttls))
            )
          )
        ),
        (runtime) => Effect.promise(() => runtime.dispose())
      )
      return { cache, reads, runtime }
    }),
  ({ subject, test }, { clock }) => {
    // Read in the tests, once the suite's setup made them.
    const reads = () => subject()!.reads
    const run = <A, E>(effect: Effect.Effect<A, E, RecordCache | RecordStore | CacheStore>) =>
      subject()!.runtime.runPromise(effect)
    const storeRecord = (id: string) =>
      run(
        RecordStore.use((db) =>
          db.insert([{
            tenant: "t1",
            id,
            stream: "s",
            key: null,
            occurredAt: new Date(),
            data: {},
            dataText: JSON.stringify({}),
            traceparent: null,
            schemaVersion: null
          }])
        )
      )
    test("misses, then hits without touching the database", async () => {
      const id = makeRecordId(Date.now())
      await storeRecord(id)
      const before = reads().n
      const first = await run(RecordCache.use((c) => c.findById("t1", id)))
      const second = await run(RecordCache.use((c) => c.findById("t1", id)))
      expect([first.cache, second.cache]).toEqual(["miss", "hit"])
      expect(idOf(second.answer)).toBe(id)
      expect(reads().n - before).toBe(1)
    })

    test("coalesces 100 concurrent misses for one cold id into one database read", async () => {
      const id = makeRecordId(Date.now())
      await storeRecord(id)
      const before = reads().n
      const results = await run(
        RecordCache.use((c) =>
          Effect.all(Array.from({ length: 100 }, () => c.findById("t1", id)), { concurrency: "unbounded" })
        )
      )
      expect(results.every((r) => Option.isSome(r.answer))).toBe(true)
      expect(reads().n - before).toBe(1)
    })

    test("reads concurrent misses for many ids in one database statement, each answered with its own", async () => {
      const now = Date.now()
      const stored = Array.from({ length: 20 }, (_, i) => makeRecordId(now + i))
      for (const id of stored) await storeRecord(id)
      const unknown = Array.from({ length: 5 }, (_, i) => makeRecordId(now + 100 + i))
      const before = reads().n
      const results = await run(
        RecordCache.use((c) =>
          Effect.all(
            [
              ...[...stored, ...unknown].map((id) => c.findById("t1", id)),
              // Another tenant's read of a stored id, in the same batch, finds nothing.
              c.findById("t2", stored[0])
            ],
            { concurrency: "unbounded" }
          )
        )
      )
      expect(reads().n - before).toBe(1)
      expect(results.slice(0, 20).map((r) => idOf(r.answer))).toEqual(stored)
      expect(results.slice(20).map((r) => Option.isNone(r.answer))).toEqual(Array(6).fill(true))
      expect(new Set(results.map((r) => r.cache))).toEqual(new Set(["miss"]))
      // Remembered on the way: the same reads again need no database.
      const again = await run(
        RecordCache.use((c) => Effect.all(stored.map((id) => c.findById("t1", id)), { concurrency: "unbounded" }))
      )
      expect(again.map((r) => idOf(r.answer))).toEqual(stored)
      expect(reads().n - before).toBe(1)
    })

    test("caches a 404 briefly and drops it when the id is stored", async () => {
      const id = makeRecordId(Date.now())
      const missing = await run(RecordCache.use((c) => c.findById("t1", id)))
      expect(Option.isNone(missing.answer)).toBe(true)
      const cached404 = await run(RecordCache.use((c) => c.findById("t1", id)))
      expect(cached404.cache).toBe("hit")
      expect(Option.isNone(cached404.answer)).toBe(true)
      await run(RecordCache.use((c) => Effect.sync(() => c.rememberUnsafe("t1", [answerOf(id)]))))
      const found = await run(RecordCache.use((c) => c.findById("t1", id)))
      expect(idOf(found.answer)).toBe(id)
    })

    test("keys entries per tenant: one tenant's cached record is not another's", async () => {
      const id = makeRecordId(Date.now())
      await run(RecordCache.use((c) => Effect.sync(() => c.rememberUnsafe("t1", [answerOf(id)]))))
      const other = await run(RecordCache.use((c) => c.findById("t2", id)))
      expect(Option.isNone(other.answer)).toBe(true)
    })

    if (clock === "real") {
      test("expires entries after their TTL", async () => {
        const id = makeRecordId(Date.now())
        await run(RecordCache.use((c) => Effect.sync(() => c.rememberUnsafe("t1", [answerOf(id)]))))
        expect((await run(RecordCache.use((c) => c.findById("t1", id)))).cache).toBe("hit")
        await sleep(800)
        const later = await run(RecordCache.use((c) => c.findById("t1", id)))
        expect(later.cache).toBe("miss")
      })
    } else {
      // Built in the test, on its TestClock, with a Db that answers at once (no sleep to drive).
      it.effect("expires entries after their TTL", () =>
        Effect.gen(function*() {
          const id = makeRecordId(Date.now())
          yield* RecordCache.use((c) => Effect.sync(() => c.rememberUnsafe("t1", [answerOf(id)])))
          yield* untilShared(`r:t1:${id}`)
          expect((yield* RecordCache.use((c) => c.findById("t1", id))).cache).toBe("hit")
          yield* TestClock.adjust("800 millis")
          const later = yield* RecordCache.use((c) => c.findById("t1", id))
          expect(later.cache).toBe("miss")
        }).pipe(
          Effect.provide(
            RecordCache.layer.pipe(
              Layer.provide(ReadReplicas.layerNone),
              Layer.provideMerge(
                Layer.merge(RecordStore.layerMemory.pipe(Layer.provide(MemoryTables.layer)), subject()!.cache)
              ),
              Layer.provide(AppConfig.layerWith(ttls))
            )
          )
        ))
    }
  }
)

describe("GET /data/{id} and the cache", () => {
  const app = makeTestApp(memoryDb)
  afterAll(() => app.dispose())

  it("says in Cache-Status whether the cache answered", async () => {
    const stored = await recordOf(await app.json("/data", { stream: "s", data: {} }))
    // written to the cache on insert
    expect((await app.request(`/data/${stored.id}`)).headers.get("cache-status")).toBe("strata; hit")
  })
})

describe("a write-through slower than CACHE_TIMEOUT", () => {
  it("still lands, and leaves the breaker closed for the reads", async () => {
    const slowSets = Layer.effect(
      CacheStore,
      Effect.map(
        CacheStore,
        (cache) => CacheStore.of({ ...cache, setMany: (entries) => Effect.delay(cache.setMany(entries), "150 millis") })
      )
    ).pipe(Layer.provideMerge(CacheStore.layerMemory()))
    const runtime = ManagedRuntime.make(
      RecordCache.layer.pipe(
        Layer.provide(ReadReplicas.layerNone),
        Layer.provideMerge(Layer.merge(RecordStore.layerMemory.pipe(Layer.provide(MemoryTables.layer)), slowSets)),
        Layer.provide(AppConfig.layerWith({ cacheTimeout: Duration.millis(50) }))
      )
    )
    try {
      // More than the breaker's five in a row, each over the 50 ms a read may take.
      const ids = Array.from({ length: 8 }, () => makeRecordId(Date.now()))
      for (const id of ids) {
        await runtime.runPromise(RecordCache.use((c) => Effect.sync(() => c.rememberUnsafe("t1", [answerOf(id)]))))
        await sleep(30)
      }
      await sleep(400)
      expect(await runtime.runPromise(RecordCache.use((c) => c.health))).toBe("up")
      const stored = await runtime.runPromise(
        CacheStore.use((cache) => Effect.orDie(cache.getMany(ids.map((id) => recordCacheKey("t1", id)))))
      )
      expect(stored.map((entry) => Option.isSome(entry))).toEqual(ids.map(() => true))
    } finally {
      await runtime.dispose()
    }
  })
})

describe("when Redis dies", () => {
  // The shared Redis answering says redis-server is installed, to start one of its own.
  let redisUp = false
  let redis: Awaited<ReturnType<typeof startRedisServer>> | undefined
  beforeAll(async () => {
    redisUp = await redisAvailable()
    if (redisUp) redis = await startRedisServer()
  })
  afterAll(() => {
    redis?.kill()
  })

  it("keeps serving reads and writes with no 5xx, and readiness says degraded", async (ctx) => {
    if (!redisUp) return ctx.skip()
    const app = makeTestApp(
      memoryDb,
      {},
      CacheStore.layerRedis({ url: Redacted.make(redis!.url), prefix: "t:" })
    )
    try {
      const stored = await recordOf(await app.json("/data", { stream: "s", data: {} }))
      expect((await app.request(`/data/${stored.id}`)).headers.get("cache-status")).toBe("strata; hit")
      redis!.kill()
      await sleep(100)
      // Traffic goes on until the cache's breaker opens (its write-throughs fail in the
      // background, a few per 10 ms flush, however fast the writes are answered).
      const breakerOpen = /strata_circuit_breaker_state\{[^}]*dependency="cache"[^}]*\} 2/
      const statuses: Array<number> = []
      let metrics = ""
      for (let i = 0; i < 200 && !breakerOpen.test(metrics); i++) {
        statuses.push((await app.request(`/data/${stored.id}`)).status)
        statuses.push((await app.json("/data", { stream: "s", data: { i } })).status)
        await sleep(10)
        metrics = await (await app.request("/metrics")).text()
      }
      expect(statuses.filter((s) => s >= 500)).toEqual([])
      expect(metrics).toMatch(breakerOpen)
      const ready = await app.request("/health/ready")
      expect(ready.status).toBe(200)
      expect((await readinessOf(ready)).dependencies.cache).toBe("degraded")
    } finally {
      await app.dispose()
    }
  }, 30_000)
})

describe("CacheStore.setMany on Redis", () => {
  let up = false
  beforeAll(async () => {
    up = await redisAvailable()
  })

  it("writes every entry with its own value and time to live, in one call", async (ctx) => {
    if (!up) return ctx.skip()
    const prefix = `strata-setmany-${process.pid}-${Date.now()}:`
    const runtime = ManagedRuntime.make(CacheStore.layerRedis({ url: Redacted.make(REDIS_URL), prefix }))
    try {
      const entries = Array.from({ length: 300 }, (_, i) => ({
        key: `k${i}`,
        // values a script must pass through untouched: quotes, newlines, non-ASCII
        value: `{"i":${i},"s":"a \\"q\\"\\n\u00e9"}`,
        ttl: Duration.seconds(i % 2 === 0 ? 60 : 5)
      }))
      await runtime.runPromise(CacheStore.use((c) => c.setMany(entries)))
      const redis = new Redis(REDIS_URL)
      try {
        for (const e of [entries[0], entries[1], entries[299]]) {
          expect(await redis.get(prefix + e.key)).toBe(e.value)
          const pttl = await redis.pttl(prefix + e.key)
          expect(pttl).toBeGreaterThan(Duration.toMillis(e.ttl) - 2_000)
          expect(pttl).toBeLessThanOrEqual(Duration.toMillis(e.ttl))
        }
        const read = await runtime.runPromise(CacheStore.use((c) => c.getMany(["k7", "absent"])))
        expect(read).toEqual([Option.some(entries[7].value), Option.none()])
      } finally {
        await redis.quit()
      }
    } finally {
      await runtime.dispose()
    }
  })
})
