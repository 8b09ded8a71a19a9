/**
 * `pnpm bench:events`: publish throughput into a real Kafka broker while
 * `POST /data` runs at its maximum, and the delivery lag (commit to broker
 * acknowledgement) at that load and at half of it. A benchmark, not a test.
 *
 * Starts a broker of its own (scripts/kafka, in a temporary directory), makes a
 * throwaway database on the local PostgreSQL and a server on both, makes the
 * topic itself with `message.timestamp.type=LogAppendTime` (so each message
 * carries the time the broker appended it), then:
 * 1. max: autocannon POSTs with BENCH_CONNECTIONS (default 50) for BENCH_DURATION
 *    seconds (default 10); then waits until the outbox is empty;
 * 2. half: the same at half the request rate reached in 1.
 * For each it reads back every event of the phase and reports events/s
 * published during the load, how long the outbox took to drain after it, and
 * P50/P99 of (broker append time − the record's `ingestedAt`, the time of its
 * transaction). The server's own `strata_event_delivery_lag_seconds` histogram
 * is printed beside it (interpolated within its buckets). Cleans up everything.
 */
import { Admin, Consumer, stringDeserializers } from "@platformatic/kafka"
import autocannon from "autocannon"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { once } from "node:events"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { psql } from "./seed.ts"

const ROOT = new URL("..", import.meta.url).pathname
const ADMIN_URL = "postgres://root@127.0.0.1:5432/postgres"
const DURATION = Number(process.env.BENCH_DURATION ?? 10)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const TOPIC = "strata.bench"

const log = (message: string) => console.error(`bench:events: ${message}`)

const run = (file: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}) =>
  new Promise<string>((resolve, reject) =>
    execFile(
      file,
      args,
      { cwd: ROOT, env: { ...process.env, ...env } },
      (error, stdout, stderr) =>
        error === null ? resolve(stdout) : reject(new Error(`${file} ${args.join(" ")}: ${stderr}`))
    )
  )

const freePort = async () => {
  const server = createServer().listen(0, "127.0.0.1")
  await once(server, "listening")
  const port = (server.address() as { port: number }).port
  server.close()
  return port
}

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

const main = async () => {
  const dir = mkdtempSync(join(tmpdir(), "strata-bench-kafka-"))
  const database = `strata_bench_${randomBytes(4).toString("hex")}`
  let server: ChildProcess | undefined
  try {
    log("starting a broker")
    const brokers = /KAFKA_BROKERS=(\S+)/.exec(await run("scripts/kafka", ["start", "--dir", dir]))![1]
    const admin = new Admin({ clientId: "strata-bench", bootstrapBrokers: [brokers] })
    await admin.createTopics({
      topics: [TOPIC],
      partitions: 12,
      replicas: 1,
      configs: [{ name: "message.timestamp.type", value: "LogAppendTime" }]
    })
    await admin.close()

    await psql(ADMIN_URL, `CREATE DATABASE ${database}`)
    const url = new URL(ADMIN_URL)
    url.pathname = `/${database}`
    const env = { DATABASE_URL: url.toString(), KAFKA_BROKERS: brokers, KAFKA_TOPIC: TOPIC, LOG_LEVEL: "Warn" }
    const cli = (args: ReadonlyArray<string>) =>
      run(process.execPath, ["packages/server/src/cli/main.ts", ...args], env)
    await cli(["migrate"])
    await cli(["tenants", "create", "bench"])
    const key = (await cli([
      "keys",
      "create",
      "--tenant",
      "bench",
      "--rate-limit-rps",
      "1000000000",
      "--rate-limit-burst",
      "1000000000"
    ])).trim()
    const port = await freePort()
    const base = `http://127.0.0.1:${port}`
    server = spawn(process.execPath, ["packages/server/src/main.ts"], {
      cwd: ROOT,
      stdio: ["ignore", "inherit", "inherit"],
      env: { ...process.env, ...env, HOST: "127.0.0.1", PORT: String(port), ACCESS_LOG: "false" }
    })
    server.on("exit", (code, signal) => log(`the server exited (${code ?? signal})`))
    for (let i = 0; i < 300; i++) {
      if ((await fetch(`${base}/health/ready`).then((r) => r.status, () => 0)) === 200) break
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    const request = (rate?: number) =>
      autocannon({
        url: `${base}/data`,
        method: "POST",
        connections: CONNECTIONS,
        duration: DURATION,
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
      })

    log("warming up")
    await autocannon({ url: `${base}/health/live`, duration: 2 })
    const rows: Array<Array<string>> = []
    let maxRate = 0
    for (const phase of ["max", "half"] as const) {
      const rate = phase === "half" ? Math.round(maxRate / 2) : undefined
      log(`POST /data at ${phase === "max" ? "maximum" : `${rate} requests/s`} for ${DURATION} s`)
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
      if (phase === "max") maxRate = stored / DURATION
      const lags = await readLags(brokers, since, stored)
      rows.push([
        phase === "max" ? "max" : `half (${rate}/s)`,
        (stored / DURATION).toFixed(0),
        (publishedDuring / DURATION).toFixed(0),
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
  } finally {
    if (server !== undefined && server.exitCode === null) {
      server.kill("SIGTERM")
      await once(server, "exit")
    }
    await run("scripts/kafka", ["stop", "--dir", dir]).catch(() => undefined)
    rmSync(dir, { recursive: true, force: true })
    await psql(ADMIN_URL, `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined)
  }
}

await main()
