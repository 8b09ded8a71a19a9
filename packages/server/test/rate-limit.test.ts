/**
 * Per-key rate limits (README: The API): a burst past the limit gets 429 problems with
 * Retry-After and the IETF RateLimit headers, service resumes as tokens flow
 * back, keys do not share buckets, and with Redis killed the in-process bucket
 * takes over. Against the real Redis and in memory.
 */
import { beforeAll, describe, expect, it } from "@effect/vitest"
import {
  acquireApp,
  cacheBackends,
  describeBackends,
  expectProblem,
  freshDatabase,
  makeTestApp,
  memoryDb,
  pgDb,
  postgresAvailable,
  REDIS_URL,
  redisAvailable,
  scopedTestApp,
  sleep,
  startRedisServer,
  type TestApp
} from "@strata/testing"
import { Effect, Redacted } from "effect"
import { TestClock } from "effect/testing"
import { randomBytes } from "node:crypto"
import { CacheStore } from "../src/platform/cache/CacheStore.ts"

/** Sends `n` reads one after the other with `key`; answers the responses. */
const burst = async (app: TestApp, key: string, n: number) => {
  const out: Array<Response> = []
  for (let i = 0; i < n; i++) out.push(await app.request("/data?stream=limited", {}, key))
  return out
}

/** A burst past the limit, then the wait for Retry-After; `wait` passes that time. */
const pastTheBurst = async (app: TestApp, wait: (seconds: number) => Promise<void>) => {
  const key = await app.createKey({ rateLimit: { rps: 2, burst: 3 } })
  const [a, b, c, d] = await burst(app, key, 4)
  expect([a, b, c].map((r) => r.status)).toEqual([200, 200, 200])
  expect(a.headers.get("ratelimit-policy")).toBe(`"per-key";q=3;w=2`)
  expect(a.headers.get("ratelimit")).toMatch(/^"per-key";r=2;t=\d+$/)
  expect(c.headers.get("ratelimit")).toMatch(/^"per-key";r=0;t=\d+$/)
  await expectProblem(d, 429, "rate-limited")
  expect(Number(d.headers.get("retry-after"))).toBeGreaterThanOrEqual(1)
  expect(d.headers.get("ratelimit")).toMatch(/^"per-key";r=0;t=\d+$/)
  expect(d.headers.get("ratelimit-policy")).toBe(`"per-key";q=3;w=2`)

  await wait(Number(d.headers.get("retry-after")))
  expect((await app.request("/data?stream=limited", {}, key)).status).toBe(200)
}

/**
 * `clock`: "test" runs the wait on the TestClock (the in-memory buckets and the
 * limiter read the Clock they are built with); "real" sleeps, as Redis keeps its
 * own time.
 */
describeBackends(
  "rate limits",
  cacheBackends,
  (cache) => Effect.map(acquireApp(() => makeTestApp(memoryDb, {}, cache)), (app) => ({ app, cache })),
  ({ subject, test }, { clock }) => {
    // Read in the tests, once the suite's setup made it.
    const cache = () => subject()!.cache

    const title = "answers 429 past the burst, with Retry-After and RateLimit headers, then resumes"
    if (clock === "real") {
      test(title, ({ app }) => pastTheBurst(app, (seconds) => sleep(seconds * 1000)), 30_000)
    } else {
      it.effect(title, () =>
        Effect.gen(function*() {
          const onTestClock = yield* scopedTestApp(memoryDb, {}, cache())
          // The callback runs outside the fiber: the adjust is run back in it, on its TestClock.
          const context = yield* Effect.context<never>()
          yield* Effect.promise(() =>
            pastTheBurst(
              onTestClock,
              (seconds) => Effect.runPromiseWith(context)(TestClock.adjust(`${seconds} seconds`))
            )
          )
        }))
    }

    test("lets through every one of many concurrent requests within the burst", async ({ app }) => {
      // 100 at once under a burst of 1,000: leases must be shared, not each taken whole.
      const key = await app.createKey({ rateLimit: { rps: 1000, burst: 1000 } })
      const responses = await Promise.all(
        Array.from({ length: 100 }, () => app.request("/data?stream=limited", {}, key))
      )
      expect(responses.map((r) => r.status).filter((s) => s !== 200)).toEqual([])
    })

    test("limits each key on its own", async ({ app }) => {
      const first = await app.createKey({ rateLimit: { rps: 1, burst: 1 } })
      const second = await app.createKey({ rateLimit: { rps: 1, burst: 1 } })
      expect((await burst(app, first, 2)).map((r) => r.status)).toEqual([200, 429])
      expect((await burst(app, second, 1)).map((r) => r.status)).toEqual([200])
    })

    test("applies RATE_LIMIT_RPS / RATE_LIMIT_BURST to keys without their own limits", async () => {
      const limited = makeTestApp(memoryDb, { rateLimitRps: 1, rateLimitBurst: 2 }, cache())
      try {
        const key = await limited.createKey()
        const statuses = (await burst(limited, key, 3)).map((r) => r.status)
        expect(statuses).toEqual([200, 200, 429])
      } finally {
        await limited.dispose()
      }
    })
  }
)

// The shared Redis, for the suites below that use it without the matrix.
let redisUp = false
beforeAll(async () => {
  redisUp = await redisAvailable()
})

describe("rate limits shared by replicas through Redis", () => {
  it("hold across two servers within one lease each, and cost a Redis call per lease, not per request", async (ctx) => {
    if (!redisUp) return ctx.skip()
    const prefix = `strata-test-${randomBytes(4).toString("hex")}:`
    const redis = () => CacheStore.layerRedis({ url: Redacted.make(REDIS_URL), prefix })
    // Two replicas: one database (so one set of keys), one Redis.
    if (!(await postgresAvailable())) return ctx.skip()
    const db = await freshDatabase()
    const first = makeTestApp(pgDb(db.url), {}, redis())
    const second = makeTestApp(pgDb(db.url), {}, redis())
    try {
      const limit = { rps: 200, burst: 200 }
      const key = await first.createKey({ rateLimit: limit })
      // Metrics are per process and both servers run in this one: count the calls made meanwhile.
      const calls = async () =>
        Number(
          /strata_cache_call_duration_seconds_count\{[^}]*operation="takeTokens"[^}]*\} (\d+)/.exec(
            await (await first.request("/metrics", {}, null)).text()
          )?.[1] ?? 0
        )
      const started = Date.now()
      const statuses: Array<number> = []
      for (let i = 0; i < 150; i++) {
        const [a, b] = await Promise.all([burst(first, key, 1), burst(second, key, 1)])
        statuses.push(a[0].status, b[0].status)
      }
      const seconds = (Date.now() - started) / 1000
      const allowed = statuses.filter((s) => s === 200).length
      expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([])
      // The burst, what flowed in meanwhile, and at most one lease (10 tokens) per server.
      expect(allowed).toBeLessThanOrEqual(limit.burst + Math.ceil(limit.rps * seconds) + 2 * 10)
      expect(allowed).toBeGreaterThanOrEqual(limit.burst)

      // Within the limit, a Redis call hands out a lease of 50 tokens here (50 ms at 1,000/s).
      const roomy = await first.createKey({ rateLimit: { rps: 1000, burst: 1000 } })
      const callsBefore = await calls()
      const roomyStarted = Date.now()
      for (let i = 0; i < 100; i++) {
        const [a, b] = await Promise.all([burst(first, roomy, 1), burst(second, roomy, 1)])
        expect([a[0].status, b[0].status]).toEqual([200, 200])
      }
      const redisCalls = (await calls()) - callsBefore
      expect(redisCalls).toBeGreaterThan(0)
      // Leases last a second: a slow run may take a fresh one per server per second.
      const leaseSeconds = Math.ceil((Date.now() - roomyStarted) / 1000)
      expect(redisCalls).toBeLessThanOrEqual(200 / 50 + 2 * (1 + leaseSeconds))
    } finally {
      await first.dispose()
      await second.dispose()
      await db.drop()
    }
  }, 60_000)
})

describe("rate limits when Redis dies", () => {
  it("fall back to the in-process bucket: still enforced, never a 5xx", async (ctx) => {
    if (!redisUp) return ctx.skip()
    const redis = await startRedisServer()
    const app = makeTestApp(memoryDb, {}, CacheStore.layerRedis({ url: Redacted.make(redis.url), prefix: "rl:" }))
    try {
      const key = await app.createKey({ rateLimit: { rps: 0.5, burst: 2 } })
      expect((await burst(app, key, 1)).map((r) => r.status)).toEqual([200])
      redis.kill()
      await sleep(100)
      const statuses = (await burst(app, key, 4)).map((r) => r.status)
      expect(statuses.filter((s) => s >= 500)).toEqual([])
      expect(statuses.slice(0, 2)).toEqual([200, 200])
      expect(statuses.slice(2)).toEqual([429, 429])
      const metrics = await (await app.request("/metrics", {}, null)).text()
      expect(metrics).toMatch(/strata_rate_limit_decisions_total\{[^}]*where="local"[^}]*\} [1-9]/)
    } finally {
      redis.kill()
      await app.dispose()
    }
  }, 30_000)
})
