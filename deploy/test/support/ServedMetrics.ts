/**
 * The metric names the server's `/metrics` really serves: the whole app in
 * process (as the server's own metrics test builds it) on the real PostgreSQL
 * and Redis, after reads, writes, a miss, a list, a failing Redis, a failing
 * event bus and a failing database call, so the error counters exist too. Answers every sample name
 * (histograms with their _bucket, _sum and _count).
 */
import { PgClient } from "@effect/sql-pg"
import {
  AppConfig,
  CacheStore,
  DbPolicy,
  type EventBus,
  layerConnection,
  layerStorage,
  makeRecordId
} from "@strata/server"
import {
  freshDatabase,
  makeTestApp,
  memoryDb,
  parsePrometheusText,
  RecordingBus,
  REDIS_URL,
  sleep,
  type TestApp
} from "@strata/testing"
import { Duration, Effect, Layer, ManagedRuntime, Option, Redacted } from "effect"
import { PrometheusMetrics } from "effect/observability"
import { randomBytes } from "node:crypto"

const scrape = async (app: TestApp) => parsePrometheusText(await (await app.request("/metrics")).text())

const until = async (app: TestApp, check: (names: Set<string>) => boolean): Promise<Set<string>> => {
  for (let i = 0; i < 100; i++) {
    const names = new Set((await scrape(app)).samples.map((s) => s.name))
    if (check(names)) return names
    await sleep(50)
  }
  return new Set((await scrape(app)).samples.map((s) => s.name))
}

export const servedMetricNames = async (): Promise<ReadonlySet<string>> => {
  const served = new Set<string>()
  const db = await freshDatabase()
  const app = makeTestApp(
    layerStorage.pipe(Layer.provide(layerConnection)),
    { databaseUrl: Option.some(Redacted.make(db.url)), databasePoolMax: 2, outboxPollInterval: Duration.millis(10) },
    CacheStore.layerRedis({ url: Redacted.make(REDIS_URL), prefix: `strata-deploy-${randomBytes(4).toString("hex")}:` })
  )
  try {
    const created = await app.json("/data", { stream: "orders", data: { n: 1 } })
    const { id } = (await created.json()) as { id: string }
    await app.request(`/data/${id}`)
    await app.request(`/data/${makeRecordId(Date.now())}`)
    await app.request("/data?stream=orders")
    await app.json("/data/batch", { records: [{ stream: "orders", data: { n: 2 } }] })
    await app.request("/health/ready")
    for (
      const name of await until(
        app,
        (names) => names.has("strata_outbox_published_total") && names.has("strata_db_pool_connections")
      )
    ) served.add(name)
  } finally {
    await app.dispose()
  }

  // A database call that fails, through the policy every call goes through.
  const dbRuntime = ManagedRuntime.make(
    Layer.mergeAll(DbPolicy.layer, PgClient.layer({ url: Redacted.make(db.url), maxConnections: 1 })).pipe(
      Layer.provide(AppConfig.layerWith({ dbRetries: 0 }))
    )
  )
  try {
    await dbRuntime.runPromiseExit(Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      const policy = yield* DbPolicy
      return yield* policy.run("Deploy.divide", "idempotent", sql.unsafe("SELECT 1/0"))
    }))
    const text = await dbRuntime.runPromise(PrometheusMetrics.format())
    for (const sample of parsePrometheusText(text).samples) served.add(sample.name)
  } finally {
    await dbRuntime.dispose()
    await db.drop()
  }

  // Redis that refuses every call: its error counters.
  const brokenCache = makeTestApp(
    memoryDb,
    {},
    CacheStore.layerRedis({ url: Redacted.make("redis://127.0.0.1:1"), prefix: "x:" })
  )
  try {
    await brokenCache.request(`/data/${makeRecordId(Date.now())}`)
    for (const name of await until(brokenCache, (names) => names.has("strata_cache_call_errors_total"))) {
      served.add(name)
    }
  } finally {
    await brokenCache.dispose()
  }

  // An event bus that fails every publish: the publish error counter.
  const runtime = ManagedRuntime.make(RecordingBus.layer.pipe(Layer.provide(AppConfig.layerWith())))
  const bus = await runtime.runPromise(RecordingBus.use(Effect.succeed))
  bus.failing = true
  const busContext = await runtime.runPromise(Effect.context<RecordingBus | EventBus>())
  const brokenBus = makeTestApp(
    memoryDb,
    { outboxPollInterval: Duration.millis(10) },
    undefined,
    Layer.succeedContext(busContext)
  )
  try {
    await brokenBus.json("/data", { stream: "s", data: {} })
    for (const name of await until(brokenBus, (names) => names.has("strata_event_publish_errors_total"))) {
      served.add(name)
    }
  } finally {
    await brokenBus.dispose()
    await runtime.dispose()
  }
  return served
}
