/**
 * Events against a real Apache Kafka broker (the one ./scripts/test starts):
 * a real server process makes its topic, every stored record (single POSTs,
 * batches, concurrent POSTs that share a group commit) reaches Kafka exactly
 * once with the key, value and headers of README: Events, one key stays in one
 * partition, `pnpm strata events tail` shows them, and SASL works, or fails
 * clearly without the password in any log line.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import {
  allOf,
  batchOf,
  consumeUntil,
  dataHeaders,
  type Event,
  eventually,
  freshDatabase,
  freshTopic,
  kafka,
  kafkaAvailable,
  parsePrometheusText,
  partitionsOf,
  postgresAvailable,
  type RecordBody,
  recordOf,
  type ServerProcess,
  sleep,
  startServer
} from "@strata/testing"
import { type ChildProcess, spawn } from "node:child_process"
import { join } from "node:path"
import { createInterface } from "node:readline"

const available = kafkaAvailable() && await postgresAvailable()

const metrics = async (server: ServerProcess) =>
  parsePrometheusText(await (await fetch(`${server.base}/metrics`)).text())

/** POSTs `body` to `path`, expects 201 and reads the answer with `read`. */
const post = async <A>(
  server: ServerProcess,
  path: string,
  body: unknown,
  read: (res: Response) => Promise<A>,
  headers: Record<string, string> = {}
): Promise<A> => {
  const res = await fetch(`${server.base}${path}`, {
    method: "POST",
    headers: dataHeaders(server, headers),
    body: JSON.stringify(body)
  })
  expect(res.status).toBe(201)
  return await read(res)
}

describe.skipIf(!available)("events in a real Kafka broker", () => {
  const topic = freshTopic("delivery")
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let server: ServerProcess
  /** Every stored record, with the trace id its request carried. */
  const stored: Array<{ readonly id: string; readonly stream: string; readonly key: string | null; trace: string }> = []
  let events: Array<Event> = []

  beforeAll(async () => {
    db = await freshDatabase()
    expect(await partitionsOf(kafka.brokers, topic)).toBeUndefined() // the broker makes no topic by itself
    server = await startServer({
      DATABASE_URL: db.url,
      KAFKA_BROKERS: kafka.brokers,
      KAFKA_TOPIC: topic,
      KAFKA_TOPIC_PARTITIONS: "3",
      KAFKA_TOPIC_REPLICATION: "1",
      OUTBOX_POLL_INTERVAL: "10ms",
      WRITE_BATCH_WINDOW: "5ms"
    })
    let n = 0
    const traceparent = () => {
      const trace = (++n).toString(16).padStart(32, "a")
      return { trace, header: `00-${trace}-00f067aa0ba902b7-01` }
    }
    const keep = (records: ReadonlyArray<RecordBody>, trace: string) => {
      for (const r of records) stored.push({ id: r.id, stream: r.stream, key: r.key, trace })
    }
    // Singles, one after the other (a key repeats, some have none).
    for (let i = 0; i < 12; i++) {
      const t = traceparent()
      const body = { stream: "orders", ...(i % 3 === 0 ? {} : { key: `customer-${i % 2}` }), data: { i, price: 12.5 } }
      keep([await post(server, "/data", body, recordOf, { traceparent: t.header })], t.trace)
    }
    // Batches: one request, many records, one transaction.
    for (let b = 0; b < 3; b++) {
      const t = traceparent()
      const records = Array.from({ length: 25 }, (_, i) => ({
        stream: "batches",
        key: `customer-${i % 2}`,
        data: { b, i, nested: { list: [1, "two", null, true], text: "ünïcødé ✓" } }
      }))
      keep((await post(server, "/data/batch", { records }, batchOf, { traceparent: t.header })).records, t.trace)
    }
    // Concurrent singles: the server coalesces them into shared group commits.
    await Promise.all(Array.from({ length: 40 }, async (_, i) => {
      const t = traceparent()
      keep([
        await post(server, "/data", { stream: "concurrent", key: `k${i % 5}`, data: { i } }, recordOf, {
          traceparent: t.header
        })
      ], t.trace)
    }))
    events = await consumeUntil(kafka.brokers, topic, allOf(stored.map((r) => r.id)))
  }, 120_000)
  afterAll(async () => {
    server?.child.kill("SIGKILL")
    await server?.exited
    await db?.drop()
  })

  it("the server made its topic with KAFKA_TOPIC_PARTITIONS partitions", async () => {
    expect(await partitionsOf(kafka.brokers, topic)).toBe(3)
  })

  it("a consumer reads exactly one event per stored record", () => {
    expect(stored).toHaveLength(12 + 75 + 40)
    const ids = events.map((e) => e.headers.get("strata-record-id"))
    expect(ids.toSorted()).toEqual(stored.map((r) => r.id).toSorted())
  })

  it("each event has key tenant/stream/key-or-id and the headers the README (Events) names, with the request's traceparent", () => {
    const byId = new Map(events.map((e) => [e.headers.get("strata-record-id")!, e]))
    for (const record of stored) {
      const event = byId.get(record.id)!
      expect(event.key).toBe(`test/${record.stream}/${record.key ?? record.id}`)
      expect(Object.fromEntries(event.headers)).toEqual({
        "strata-tenant": "test",
        "strata-stream": record.stream,
        "strata-record-id": record.id,
        "strata-schema-version": "none",
        // the request's server span, in the caller's trace
        traceparent: expect.stringMatching(new RegExp(`^00-${record.trace}-[0-9a-f]{16}-01$`))
      })
    }
  })

  it("each event's value is the record as GET /data/{id} answers it", async () => {
    const byId = new Map(events.map((e) => [e.headers.get("strata-record-id")!, e]))
    for (const record of stored.filter((_, i) => i % 4 === 0)) {
      const res = await fetch(`${server.base}/data/${record.id}`, { headers: dataHeaders(server) })
      expect(res.status).toBe(200)
      const body = await res.text()
      const value = byId.get(record.id)!.value
      // Byte for byte: one serialisation for answers, cache entries and events.
      expect(value).toBe(body)
    }
  })

  it("events with one key are all in one partition, in the order they were stored", () => {
    const byKey = new Map<string, Array<Event>>()
    for (const event of events) byKey.set(event.key, [...(byKey.get(event.key) ?? []), event])
    const sent = new Map(stored.map((r, i) => [r.id, i]))
    for (const [key, list] of byKey) {
      expect(new Set(list.map((e) => e.partition)).size, key).toBe(1)
      // sequential writes of one key (singles, batches): the partition's order is the order they were stored
      if (!key.startsWith("test/concurrent/")) {
        const order = list.map((e) => sent.get(e.headers.get("strata-record-id")!)!)
        expect(order).toEqual(order.toSorted((a, b) => a - b))
      }
    }
    expect(new Set(events.map((e) => e.partition)).size).toBeGreaterThan(1) // the keys spread
  })

  it("measures each publish and each event's delivery lag", async () => {
    const m = await metrics(server)
    expect(m.sum("strata_event_delivery_lag_seconds_count")).toBeGreaterThanOrEqual(stored.length)
    expect(m.sum("strata_event_publish_duration_seconds_count", { outcome: "ok" })).toBeGreaterThan(0)
    expect(m.sum("strata_outbox_published_total")).toBeGreaterThanOrEqual(stored.length)
  })

  it("`pnpm strata events tail --from-beginning --stream` prints one line per event of the stream", async () => {
    const tail: ChildProcess = spawn(
      process.execPath,
      [join(import.meta.dirname, "../src/cli/main.ts"), "events", "tail", "--from-beginning", "--stream", "batches"],
      { env: { ...process.env, KAFKA_BROKERS: kafka.brokers, KAFKA_TOPIC: topic }, stdio: ["ignore", "pipe", "pipe"] }
    )
    const lines: Array<string> = []
    createInterface({ input: tail.stdout! }).on("line", (line) => lines.push(line))
    const wanted = stored.filter((r) => r.stream === "batches")
    try {
      await eventually(() => lines.length >= wanted.length, 30_000, 100)
      await sleep(300) // and no more
    } finally {
      tail.kill("SIGINT")
    }
    expect(lines).toHaveLength(wanted.length)
    const first = wanted[0]
    const line = lines.find((l) => l.includes(`id=${first.id}`))!
    expect(line).toMatch(
      new RegExp(
        `^tenant=test stream=batches key="${first.key}" id=${first.id} partition=[0-2] offset=\\d+ trace=${first.trace}$`
      )
    )
  })
})

describe.skipIf(!available)("events over SASL", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  beforeAll(async () => {
    db = await freshDatabase()
  })
  afterAll(() => db?.drop())

  const sasl = (mechanism: string, password: string) => ({
    DATABASE_URL: db.url,
    KAFKA_BROKERS: kafka.saslBrokers,
    KAFKA_SASL_MECHANISM: mechanism,
    KAFKA_SASL_USERNAME: kafka.saslUser,
    KAFKA_SASL_PASSWORD: password,
    KAFKA_TOPIC_REPLICATION: "1",
    OUTBOX_POLL_INTERVAL: "10ms"
  })

  it.each(["PLAIN", "SCRAM-SHA-256"])("with %s and the right password, delivers", async (mechanism) => {
    const topic = freshTopic(`sasl-${mechanism.toLowerCase()}`)
    const server = await startServer({ ...sasl(mechanism, kafka.saslPassword), KAFKA_TOPIC: topic })
    try {
      const record = await post(server, "/data", { stream: "secure", data: { mechanism } }, recordOf)
      const events = await consumeUntil(kafka.brokers, topic, allOf([record.id]))
      expect(events.map((e) => e.headers.get("strata-record-id"))).toEqual([record.id])
    } finally {
      server.child.kill("SIGKILL")
      await server.exited
    }
  }, 60_000)

  it("with a wrong password, keeps taking writes and says why it cannot publish, without the password", async () => {
    const wrong = `wrong-${kafka.saslPassword}-pw`
    const server = await startServer({
      ...sasl("SCRAM-SHA-512", wrong),
      KAFKA_TOPIC: freshTopic("sasl-wrong"),
      LOG_LEVEL: "Info"
    })
    try {
      await post(server, "/data", { stream: "secure", data: {} }, recordOf)
      await eventually(() => server.output().includes("rejected the SASL credentials"), 30_000, 100)
      await post(server, "/data", { stream: "secure", data: {} }, recordOf) // still up
      const reported = server.output().split("\n").find((l) => l.includes("rejected the SASL credentials"))!
      expect(JSON.parse(reported).message).toContain(
        `Kafka rejected the SASL credentials of user "${kafka.saslUser}" (SCRAM-SHA-512)`
      )
      expect(server.output()).not.toContain(wrong)
      expect(server.output()).not.toContain(kafka.saslPassword)
      expect(server.child.exitCode).toBeNull()
    } finally {
      server.child.kill("SIGKILL")
      await server.exited
    }
  }, 60_000)
})
