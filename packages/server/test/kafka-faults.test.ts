/**
 * A real server and a Kafka broker of the suite's own, under write load:
 * - the broker killed (SIGKILL): POSTs keep answering 201 and the outbox grows;
 *   started again, the outbox drains and every acknowledged record's event is
 *   in Kafka (at least once: duplicates only from a batch whose
 *   acknowledgement was lost), first copies in order per key;
 * - the broker frozen (SIGSTOP): POSTs stay fast, publishes time out
 *   (OUTBOX_PUBLISH_TIMEOUT); thawed (SIGCONT), everything arrives.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import {
  allOf,
  type Broker,
  consumeUntil,
  freshDatabase,
  freshTopic,
  kafkaAvailable,
  type KeyedWrite,
  keyedWriters,
  parsePrometheusText,
  postgresAvailable,
  type ServerProcess,
  sleep,
  startBroker,
  startServer
} from "@strata/testing"

const available = kafkaAvailable() && await postgresAvailable()

const WRITERS = 4

/** WRITERS sequential clients, one key each. */
const load = (server: ServerProcess) => keyedWriters(server, { stream: "faults", writers: WRITERS })

const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = values.toSorted((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}

describe.skipIf(!available)("the relay while the Kafka broker dies and hangs", () => {
  const topic = freshTopic("faults")
  let broker: Broker
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let server: ServerProcess
  const outbox = async () =>
    parsePrometheusText(await (await fetch(`${server.base}/metrics`)).text()).sum("strata_outbox_events")

  beforeAll(async () => {
    ;[broker, db] = await Promise.all([startBroker(), freshDatabase()])
    server = await startServer({
      DATABASE_URL: db.url,
      KAFKA_BROKERS: broker.brokers,
      KAFKA_TOPIC: topic,
      KAFKA_TOPIC_PARTITIONS: "3",
      KAFKA_TOPIC_REPLICATION: "1",
      OUTBOX_POLL_INTERVAL: "10ms",
      OUTBOX_PUBLISH_TIMEOUT: "2s"
    })
  }, 120_000)
  afterAll(async () => {
    server?.child.kill("SIGKILL")
    await server?.exited
    await broker?.stop()
    await db?.drop()
  })

  /** Every write of `writes` has its event in Kafka; first copies come in write order per key. */
  const expectDelivered = async (writes: ReadonlyArray<KeyedWrite>) => {
    const ids = writes.map((w) => w.id)
    const events = await consumeUntil(broker.brokers, topic, allOf(ids), 120_000)
    expect(server.child.exitCode, `the server exited; its output:\n${server.output()}`).toBeNull()
    const seen = new Set(events.map((e) => e.headers.get("strata-record-id")))
    expect(ids.filter((id) => !seen.has(id))).toEqual([])
    for (let w = 0; w < WRITERS; w++) {
      const mine = new Set(writes.filter((x) => x.key === `writer-${w}`).map((x) => x.id))
      const firsts = events
        .filter((e) => mine.has(e.headers.get("strata-record-id")!))
        .toSorted((a, b) => Number(a.offset - b.offset))
        .map((e) => e.headers.get("strata-record-id")!)
        .filter((id, i, list) => list.indexOf(id) === i)
      expect(firsts).toEqual(writes.filter((x) => x.key === `writer-${w}`).map((x) => x.id))
    }
    return events
  }

  it(
    "SIGKILL: POSTs keep answering 201 and the outbox grows; after a restart it drains and nothing is lost",
    async () => {
      const writing = load(server)
      await sleep(1_500) // events flowing
      broker.signal("SIGKILL")
      const killedAt = writing.writes.length
      // The outbox gauge is refreshed every 5 s.
      let waiting = 0
      for (let i = 0; i < 150 && waiting === 0; i++) {
        await sleep(100)
        waiting = await outbox()
      }
      expect(waiting).toBeGreaterThan(0)
      await sleep(5_500)
      expect(await outbox()).toBeGreaterThan(waiting) // still growing
      const writes = await writing.stop()
      expect(writes.length - killedAt).toBeGreaterThan(50)
      expect(writes.filter((w) => w.status !== 201)).toEqual([])

      await broker.start() // same port and storage
      await expectDelivered(writes)
      for (let i = 0; i < 150 && await outbox() > 0; i++) await sleep(100)
      expect(await outbox()).toBe(0)
    },
    240_000
  )

  it("SIGSTOP: POST latency unaffected, publishes time out; after SIGCONT everything arrives", async () => {
    const before = load(server)
    await sleep(1_500)
    const normal = await before.stop()

    const during = load(server)
    broker.signal("SIGSTOP")
    try {
      for (let i = 0; i < 200 && !server.output().includes("the event bus did not answer within 2s"); i++) {
        await sleep(100)
      }
      await sleep(1_000)
    } finally {
      broker.signal("SIGCONT")
    }
    const stopped = await during.stop()
    expect(server.output()).toContain("the event bus did not answer within 2s")
    expect(stopped.filter((w) => w.status !== 201)).toEqual([])
    const ms = (list: ReadonlyArray<KeyedWrite>) => list.map((w) => w.ms)
    // Unaffected: far below the publish timeout, and not much above the latency without the fault.
    expect(percentile(ms(stopped), 0.99)).toBeLessThan(Math.max(500, 4 * percentile(ms(normal), 0.99)))
    await expectDelivered([...normal, ...stopped])
  }, 240_000)
})
