/**
 * `GET /metrics` (README: Operations) after real traffic through the whole app, on the real
 * PostgreSQL and Redis: request, database, pool, cache, event-bus and runtime
 * metrics are there with values that match the traffic, the text is valid
 * Prometheus exposition, and failures of each dependency are counted.
 */
import { PgClient } from "@effect/sql-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import {
  type Exposition,
  freshDatabase,
  makeTestApp,
  memoryDb,
  parsePrometheusText,
  postgresAvailable,
  RecordingBus,
  REDIS_URL,
  redisAvailable,
  sleep,
  type TestApp
} from "@strata/testing"
import { Duration, Effect, Exit, Layer, ManagedRuntime, Option, Redacted } from "effect"
import { PrometheusMetrics } from "effect/observability"
import { spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { layerStorage } from "../src/App.ts"
import type { EventBus } from "../src/events/EventBus.ts"
import { CacheStore } from "../src/platform/cache/CacheStore.ts"
import { AppConfig } from "../src/platform/config/AppConfig.ts"
import { layerConnection } from "../src/platform/sql/Connection.ts"
import { DbPolicy } from "../src/platform/sql/DbPolicy.ts"
import { makeRecordId } from "../src/records/RecordId.ts"

const available = (await postgresAvailable()) && (await redisAvailable())
const suite = available ? describe : describe.skip

const scrape = async (app: TestApp): Promise<Exposition> => {
  const response = await app.request("/metrics")
  expect(response.status).toBe(200)
  expect(response.headers.get("content-type")).toMatch(/^text\/plain/)
  return parsePrometheusText(await response.text())
}

/** Scrapes until `check` holds (background fibers update some metrics), then answers that scrape. */
const scrapeUntil = async (app: TestApp, check: (m: Exposition) => boolean) => {
  for (let i = 0; i < 100; i++) {
    const metrics = await scrape(app)
    if (check(metrics)) return metrics
    await sleep(50)
  }
  throw new Error("the metrics never reached the expected state")
}

suite("GET /metrics after real traffic", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let app: TestApp
  let metrics: Exposition
  let text: string
  beforeAll(async () => {
    db = await freshDatabase()
    app = makeTestApp(
      layerStorage.pipe(Layer.provide(layerConnection)),
      {
        databaseUrl: Option.some(Redacted.make(db.url)),
        databasePoolMax: 3,
        outboxPollInterval: Duration.millis(10)
      },
      CacheStore.layerRedis({
        url: Redacted.make(REDIS_URL),
        prefix: `strata-metrics-${randomBytes(4).toString("hex")}:`
      })
    )
    const created = await app.json("/data", { stream: "orders", data: { amount: 1 } })
    expect(created.status).toBe(201)
    const { id } = (await created.json()) as { id: string }
    expect((await app.request(`/data/${id}`)).status).toBe(200) // kept in process when stored: a hit, no Redis call
    const unknown = makeRecordId(Date.now())
    expect((await app.request(`/data/${unknown}`)).status).toBe(404) // a miss, then cached as absent
    expect((await app.request(`/data/${unknown}`)).status).toBe(404) // a hit
    expect((await app.request("/data?stream=orders")).status).toBe(200)
    metrics = await scrapeUntil(
      app,
      (m) =>
        m.sum("strata_outbox_published_total") >= 1 &&
        m.find("strata_db_pool_connections").length === 2
    )
    text = await (await app.request("/metrics")).text()
  })
  afterAll(async () => {
    await app?.dispose()
    await db?.drop()
  })

  it("counts requests by method, route template and status class", () => {
    expect(metrics.sum("http_server_request_duration_seconds_count", {
      method: "POST",
      route: "/data",
      status_class: "2xx"
    })).toBe(1)
    expect(metrics.sum("http_server_request_duration_seconds_count", { route: "/data/{id}", status_class: "4xx" }))
      .toBe(2)
    expect(metrics.find("http_server_active_requests")).toHaveLength(1)
    // Read when scraped: the scrape itself is the one request in flight.
    expect(metrics.sum("http_server_active_requests", {})).toBe(1)
  })

  it("measures database calls by operation", () => {
    expect(metrics.sum("strata_db_query_duration_seconds_count", { operation: "Db.insert", outcome: "ok" })).toBe(1)
    expect(metrics.sum("strata_db_query_duration_seconds_count", { operation: "Db.findByIds", outcome: "ok" })).toBe(1)
    expect(metrics.sum("strata_db_query_duration_seconds_count", { operation: "Db.list" })).toBe(1)
    expect(metrics.sum("strata_db_query_duration_seconds_sum", { operation: "Db.insert" })).toBeGreaterThan(0)
    expect(metrics.sum("strata_db_query_errors_total")).toBe(0)
  })

  it("reports the pool: its size, the connections this process holds, and calls waiting", () => {
    expect(metrics.sum("strata_db_pool_max_connections")).toBe(3)
    const open = metrics.sum("strata_db_pool_connections")
    expect(open).toBeGreaterThanOrEqual(1) // at least the sampler's own
    expect(open).toBeLessThanOrEqual(3)
    expect(metrics.find("strata_db_pool_waiting")).toHaveLength(1)
  })

  it("measures Redis calls and gives the hits and misses for a hit ratio", () => {
    // The stored record answers from the in-process level; the unknown id asks Redis twice.
    expect(metrics.sum("strata_cache_call_duration_seconds_count", { operation: "get", outcome: "ok" })).toBe(2)
    expect(metrics.sum("strata_cache_call_duration_seconds_count", { operation: "set", outcome: "ok" }))
      .toBeGreaterThanOrEqual(2)
    expect(metrics.sum("strata_cache_call_errors_total")).toBe(0)
    expect(metrics.sum("strata_cache_requests_total", { outcome: "hit" })).toBe(2)
    expect(metrics.sum("strata_cache_requests_total", { outcome: "miss" })).toBe(1)
  })

  it("measures event publishing and the outbox", () => {
    expect(metrics.sum("strata_event_publish_duration_seconds_count", { outcome: "ok" })).toBeGreaterThanOrEqual(1)
    expect(metrics.sum("strata_outbox_published_total")).toBe(1)
    expect(metrics.sum("strata_event_publish_errors_total")).toBe(0)
  })

  it("samples event-loop delay and memory", () => {
    for (const name of ["p50", "p99", "max"]) {
      const [delay] = metrics.find(`nodejs_eventloop_delay_${name}_seconds`)
      expect(delay.value).toBeGreaterThanOrEqual(0)
      expect(delay.value).toBeLessThan(10)
    }
    expect(metrics.sum("nodejs_heap_used_bytes")).toBeGreaterThan(1_000_000)
    expect(metrics.sum("process_resident_memory_bytes")).toBeGreaterThan(metrics.sum("nodejs_heap_used_bytes"))
  })

  it("declares a type and help for every metric, with consistent histograms", () => {
    const families = new Set(metrics.samples.map((s) => s.name.replace(/_(bucket|sum|count)$/, "")))
    for (const family of families) {
      expect(metrics.types.has(family) || metrics.types.has(`${family}_total`), family).toBe(true)
    }
    for (const [family, type] of metrics.types) {
      expect(metrics.help.get(family), family).toBeTruthy()
      if (type !== "histogram") continue
      for (const count of metrics.find(`${family}_count`)) {
        const buckets = metrics.find(`${family}_bucket`, count.labels)
        const values = buckets.map((b) => b.value)
        expect(values, family).toEqual(values.toSorted((a, b) => a - b))
        expect(buckets.find((b) => b.labels.le === "+Inf")?.value, family).toBe(count.value)
      }
    }
  })

  it("passes promtool check metrics", () => {
    const promtool = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" })
    if (promtool.error !== undefined) {
      console.warn("\n!!! promtool is not on PATH: SKIPPING `promtool check metrics` !!!\n")
      return
    }
    expect(promtool.stdout + promtool.stderr).toBe("")
    expect(promtool.status).toBe(0)
  })
})

suite("failures in the metrics", () => {
  it("counts Redis calls that fail", async () => {
    // Nothing listens on port 1: every call fails at once.
    const app = makeTestApp(
      memoryDb,
      {},
      CacheStore.layerRedis({ url: Redacted.make("redis://127.0.0.1:1"), prefix: "x:" })
    )
    try {
      expect((await app.request(`/data/${makeRecordId(Date.now())}`)).status).toBe(404)
      const metrics = await scrape(app)
      expect(metrics.sum("strata_cache_call_errors_total", { operation: "get", reason: "error" })).toBeGreaterThan(0)
      expect(metrics.sum("strata_cache_requests_total", { outcome: "error" })).toBeGreaterThan(0)
    } finally {
      await app.dispose()
    }
  })

  it("counts event-bus publishes that fail", async () => {
    const runtime = ManagedRuntime.make(RecordingBus.layer.pipe(Layer.provide(AppConfig.layerWith())))
    const bus = await runtime.runPromise(RecordingBus.use(Effect.succeed))
    bus.failing = true
    const busContext = await runtime.runPromise(Effect.context<RecordingBus | EventBus>())
    const app = makeTestApp(
      memoryDb,
      { outboxPollInterval: Duration.millis(10) },
      undefined,
      Layer.succeedContext(busContext)
    )
    try {
      expect((await app.json("/data", { stream: "s", data: {} })).status).toBe(201)
      const metrics = await scrapeUntil(app, (m) => m.sum("strata_event_publish_errors_total") > 0)
      expect(metrics.sum("strata_event_publish_duration_seconds_count", { outcome: "error" })).toBeGreaterThan(0)
    } finally {
      await app.dispose()
      await runtime.dispose()
    }
  })

  it("counts database calls that fail, transient (a timeout) apart from permanent (a bad statement)", async () => {
    const db = await freshDatabase()
    const runtime = ManagedRuntime.make(
      Layer.mergeAll(DbPolicy.layer, PgClient.layer({ url: Redacted.make(db.url), maxConnections: 2 })).pipe(
        Layer.provide(AppConfig.layerWith({ dbRetries: 0, dbTimeout: Duration.millis(50) }))
      )
    )
    try {
      const run = (name: string, query: string) =>
        runtime.runPromiseExit(Effect.gen(function*() {
          const sql = yield* PgClient.PgClient
          const policy = yield* DbPolicy
          return yield* policy.run(name, "idempotent", sql.unsafe(query))
        }))
      expect(Exit.isFailure(await run("Test.divide", "SELECT 1/0"))).toBe(true)
      expect(Exit.isFailure(await run("Test.sleep", "SELECT pg_sleep(1)"))).toBe(true)
      const metrics = parsePrometheusText(await runtime.runPromise(PrometheusMetrics.format()))
      expect(metrics.sum("strata_db_query_errors_total", { operation: "Test.divide", reason: "permanent" })).toBe(1)
      expect(metrics.sum("strata_db_query_errors_total", { operation: "Test.sleep", reason: "transient" })).toBe(1)
      expect(metrics.sum("strata_db_query_duration_seconds_count", { operation: "Test.sleep", outcome: "error" }))
        .toBe(1)
    } finally {
      await runtime.dispose()
      await db.drop()
    }
  })
})
