/**
 * `bench events`: publish throughput into a real Kafka broker while
 * `POST /data` runs at its maximum, and the delivery lag (commit to broker
 * acknowledgement) at that load and at half of it. A benchmark, not a test.
 *
 * Starts a broker of its own (scripts/kafka, in a temporary directory), makes a
 * throwaway database on the local PostgreSQL and a server on both, makes the
 * topic itself with `message.timestamp.type=LogAppendTime` (so each message
 * carries the time the broker appended it), then:
 * 1. max: autocannon POSTs with --connections (BENCH_CONNECTIONS, default 50) for
 *    --duration seconds (BENCH_DURATION, default 10); then waits until the outbox is empty;
 * 2. half: the same at half the request rate reached in 1.
 * For each it reads back every event of the phase and reports events/s
 * published during the load, how long the outbox took to drain after it, and
 * P50/P99 of (broker append time − the record's `ingestedAt`, the time of its
 * transaction). The server's own `strata_event_delivery_lag_seconds` histogram
 * is printed beside it (interpolated within its buckets). The broker, its
 * directory, the database and the server are scoped: released however the run ends.
 */
import { Admin, Consumer, stringDeserializers } from "@platformatic/kafka"
import autocannon from "autocannon"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import { attempt, type BenchError } from "./BenchError.ts"
import { kafkaBroker } from "./Kafka.ts"
import { throwawayDatabase } from "./Postgres.ts"
import { serverProcess, strataCli } from "./Server.ts"

const TOPIC = "strata.bench"

const log = (message: string) => console.error(`bench:events: ${message}`)

const metric = async (base: string) => await (await fetch(`${base}/metrics`)).text()
const value = (text: string, name: string) =>
  Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[1] ?? 0)
const buckets = (text: string) =>
  Array.from(
    text.matchAll(/^strata_event_delivery_lag_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\} (\S+)$/gm),
    (m) => [m[1] === "+Inf" ? Infinity : Number(m[1]), Number(m[2])] as const
  )

/** The q-quantile of the histogram between two scrapes, linear within a bucket. */
const histogramQuantile = (before: string, after: string, q: number) => {
  const a = buckets(after)
  const b = new Map(buckets(before))
  const counts = a.map(([le, n]) => [le, n - (b.get(le) ?? 0)] as const)
  const total = counts.at(-1)![1]
  const rank = q * total
  let lower = 0
  let below = 0
  for (const [le, n] of counts) {
    if (n >= rank) return le === Infinity ? lower : lower + (le - lower) * ((rank - below) / Math.max(1, n - below))
    lower = le
    below = n
  }
  return lower
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]

/** Lags (ms) of the events of records ingested at or after `since`, read until `count` were found. */
const readLags = async (brokers: string, since: number, count: number) => {
  const consumer = new Consumer({
    groupId: `bench-${randomBytes(4).toString("hex")}`,
    clientId: "strata-bench",
    bootstrapBrokers: [brokers],
    deserializers: stringDeserializers,
    maxWaitTime: 200
  })
  const lags: Array<number> = []
  const seen = new Set<string>()
  const stream = await consumer.consume({ topics: [TOPIC], mode: "earliest", autocommit: false })
  const timer = setTimeout(() => stream.destroy(), 120_000)
  try {
    for await (const message of stream) {
      const record = JSON.parse(message.value) as { id: string; ingestedAt: string }
      const ingested = Date.parse(record.ingestedAt)
      if (ingested < since || seen.has(record.id)) continue
      seen.add(record.id)
      lags.push(Number(message.timestamp) - ingested)
      if (seen.size >= count) break
    }
  } catch {
    log(`read only ${seen.size} of ${count} events`)
  } finally {
    clearTimeout(timer)
    await stream.close().catch(() => undefined)
    await consumer.close(true).catch(() => undefined)
  }
  return lags.toSorted((a, b) => a - b)
}

export interface EventsBenchOptions {
  readonly duration: number
  readonly connections: number
}

/** Runs both phases and prints one Markdown table. */
const measure = async (
  base: string,
  key: string,
  brokers: string,
  { connections, duration }: EventsBenchOptions,
  signal: AbortSignal
) => {
  const request = (rate?: number) =>
    new Promise<autocannon.Result>((resolve, reject) => {
      const instance = autocannon({
        url: `${base}/data`,
        method: "POST",
        connections,
        duration,
        ...(rate === undefined ? {} : { overallRate: rate }),
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        // a key per request (1,000 keys), so the events spread over the partitions
        requests: [{
          setupRequest: (req) => {
            const n = Math.floor(Math.random() * 1_000_000)
            return {
              ...req,
              body: JSON.stringify({
                stream: "orders",
                key: `customer-${n % 1000}`,
                data: { n, amount: 1250, currency: "EUR", items: [{ sku: "A-1", qty: 2 }] }
              })
            }
          }
        }]
      }, (err, result) => err ? reject(err) : resolve(result))
      signal.addEventListener("abort", () => instance.stop(), { once: true })
    })

  log("warming up")
  await autocannon({ url: `${base}/health/live`, duration: 2 })
  const rows: Array<Array<string>> = []
  let maxRate = 0
  for (const phase of ["max", "half"] as const) {
    const rate = phase === "half" ? Math.round(maxRate / 2) : undefined
    log(`POST /data at ${phase === "max" ? "maximum" : `${rate} requests/s`} for ${duration} s`)
    const before = await metric(base)
    const since = Date.now()
    const result = await request(rate)
    const loaded = await metric(base)
    const drainStart = Date.now()
    while (true) {
      const text = await metric(base)
      if (value(text, "strata_outbox_events") === 0 && Date.now() - drainStart > 5_500) break
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
    const after = await metric(base)
    const stored = result["2xx"]
    const publishedDuring = value(loaded, "strata_outbox_published_total") -
      value(before, "strata_outbox_published_total")
    const published = value(after, "strata_outbox_published_total") - value(before, "strata_outbox_published_total")
    if (phase === "max") maxRate = stored / duration
    const lags = await readLags(brokers, since, stored)
    rows.push([
      phase === "max" ? "max" : `half (${rate}/s)`,
      (stored / duration).toFixed(0),
      (publishedDuring / duration).toFixed(0),
      `${published}/${stored}`,
      percentile(lags, 0.5).toFixed(0),
      percentile(lags, 0.99).toFixed(0),
      (1000 * histogramQuantile(before, after, 0.5)).toFixed(0),
      (1000 * histogramQuantile(before, after, 0.99)).toFixed(0)
    ])
  }
  console.log(
    [
      "| load | POST /data req/s | events/s published during the load | published/stored | lag P50 ms | lag P99 ms | histogram P50 ms | histogram P99 ms |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
      ...rows.map((r) => `| ${r.join(" | ")} |`)
    ].join("\n")
  )
}

export const runEventsBench = (options: EventsBenchOptions): Effect.Effect<void, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const brokers = yield* kafkaBroker(log)
    yield* attempt(async () => {
      const admin = new Admin({ clientId: "strata-bench", bootstrapBrokers: [brokers] })
      try {
        await admin.createTopics({
          topics: [TOPIC],
          partitions: 12,
          replicas: 1,
          configs: [{ name: "message.timestamp.type", value: "LogAppendTime" }]
        })
      } finally {
        await admin.close()
      }
    })
    const databaseUrl = yield* throwawayDatabase(log)
    const env = { DATABASE_URL: databaseUrl, KAFKA_BROKERS: brokers, KAFKA_TOPIC: TOPIC, LOG_LEVEL: "Warn" }
    yield* strataCli(["migrate"], env)
    yield* strataCli(["tenants", "create", "bench"], env)
    const key = yield* strataCli([
      "keys",
      "create",
      "--tenant",
      "bench",
      "--rate-limit-rps",
      "1000000000",
      "--rate-limit-burst",
      "1000000000"
    ], env)
    const { base } = yield* serverProcess({ env: { ...env, ACCESS_LOG: "false" }, log })
    yield* attempt((signal) => measure(base, key, brokers, options, signal))
  }))
