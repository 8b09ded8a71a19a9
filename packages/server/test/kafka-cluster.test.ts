/**
 * A real server publishing to a three-broker Kafka cluster of the suite's own
 * (`scripts/kafka start --nodes 3`; README: Events, A Kafka cluster):
 * - the topic Strata makes has three replicas of each partition and
 *   `min.insync.replicas=2`;
 * - a broker killed (SIGKILL) under write load: POSTs keep answering 201, the
 *   other two take over its partitions and the relay keeps publishing (an
 *   acknowledgement needs both in-sync replicas); every acknowledged record's
 *   event is in Kafka before the broker is back (at least once, first copies in
 *   order per key); started again, it rejoins every partition's in-sync replicas.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import {
  allOf,
  consumeUntil,
  type Event,
  eventually,
  freshDatabase,
  freshTopic,
  kafkaAvailable,
  type KafkaCluster,
  type KeyedWrite,
  keyedWriters,
  partitionsOf,
  postgresAvailable,
  recordIds,
  type ServerProcess,
  sleep,
  startKafkaCluster,
  startServer,
  topicConfig,
  topicLayout
} from "@strata/testing"

// The shared broker's presence says Java and Maven are there to start three more.
const available = kafkaAvailable() && await postgresAvailable()

const WRITERS = 4

/** WRITERS sequential clients, one key each. */
const load = (server: ServerProcess) => keyedWriters(server, { stream: "cluster", writers: WRITERS })

describe.skipIf(!available)("the relay publishing to a three-broker Kafka cluster", () => {
  const topic = freshTopic("cluster")
  let cluster: KafkaCluster
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let server: ServerProcess

  beforeAll(async () => {
    ;[cluster, db] = await Promise.all([startKafkaCluster(), freshDatabase()])
    server = await startServer({
      DATABASE_URL: db.url,
      KAFKA_BROKERS: cluster.brokers,
      KAFKA_TOPIC: topic,
      KAFKA_TOPIC_PARTITIONS: "3",
      // KAFKA_TOPIC_REPLICATION: its default, 3
      OUTBOX_POLL_INTERVAL: "10ms",
      OUTBOX_PUBLISH_TIMEOUT: "5s"
    })
  }, 180_000)
  afterAll(async () => {
    server?.child.kill("SIGKILL")
    await server?.exited
    await cluster?.stop()
    await db?.drop()
  }, 60_000)

  /**
   * Every write of `writes` has its event among those read through `brokers`;
   * first copies come in write order per key. Answers the events read.
   */
  const expectDelivered = async (brokers: string, writes: ReadonlyArray<KeyedWrite>) => {
    const ids = writes.map((w) => w.id)
    const events = await consumeUntil(brokers, topic, allOf(ids), 120_000)
    expect(server.child.exitCode, `the server exited; its output:\n${server.output()}`).toBeNull()
    const seen = new Set(recordIds(events))
    expect(ids.filter((id) => !seen.has(id))).toEqual([])
    for (let w = 0; w < WRITERS; w++) {
      const key = `writer-${w}`
      const mine = events.filter((e) => e.key === `test/cluster/${key}`)
      expect(new Set(mine.map((e) => e.partition)).size).toBeLessThanOrEqual(1)
      const firsts = mine
        .toSorted((a, b) => Number(a.offset - b.offset))
        .map((e) => e.headers.get("strata-record-id")!)
        .filter((id, i, list) => list.indexOf(id) === i)
      expect(firsts, key).toEqual(writes.filter((x) => x.key === key).map((x) => x.id))
    }
    return events
  }

  const duplicates = (events: ReadonlyArray<Event>) => events.length - new Set(recordIds(events)).size

  it("makes its topic with three replicas of each partition and min.insync.replicas=2", async () => {
    await eventually(async () => (await partitionsOf(cluster.addresses[0], topic)) === 3, 60_000, 500)
    const layout = await topicLayout(cluster.brokers, topic)
    expect(layout.brokers).toEqual([1, 2, 3])
    for (const partition of layout.partitions) expect(partition.replicas).toEqual([1, 2, 3])
    expect(await topicConfig(cluster.brokers, topic, ["min.insync.replicas"])).toEqual({
      "min.insync.replicas": "2"
    })
  }, 90_000)

  it(
    "SIGKILL of a broker under write load: POSTs answer 201, nothing is lost, order per key holds; it rejoins",
    async () => {
      const writing = load(server)
      await sleep(1_500) // events flowing
      const before = await topicLayout(cluster.brokers, topic)
      // The victim leads a partition, so that partition needs a new leader.
      const victim = before.partitions[0].leader
      const survivors = cluster.addresses.filter((_, i) => i + 1 !== victim).join(",")
      const killedAt = Date.now()
      cluster.signal(victim, "SIGKILL")
      const writesAtKill = writing.writes.length
      // Fenced after 6 s without a heartbeat: out of every ISR, its partitions led by the others.
      await eventually(
        async () => {
          const layout = await topicLayout(survivors, topic).catch(() => undefined)
          return layout !== undefined &&
            layout.partitions.every((p) => p.leader !== victim && p.isr.length === 2 && !p.isr.includes(victim))
        },
        60_000,
        250
      )
      const fencedMs = Date.now() - killedAt
      await sleep(3_000) // writes go on against two brokers
      const writes = await writing.stop()
      expect(writes.filter((w) => w.status !== 201)).toEqual([])
      expect(writes.length - writesAtKill).toBeGreaterThan(50)

      // Before the victim returns: two in-sync replicas are enough for every acknowledgement.
      const started = Date.now()
      const events = await expectDelivered(survivors, writes)
      console.log(
        `Kafka cluster: broker ${victim} killed; fenced and out of every ISR after ${fencedMs} ms; ` +
          `${writes.length} writes (${writes.length - writesAtKill} after the kill), all delivered by the two ` +
          `others ${Date.now() - started} ms after the load stopped, ${duplicates(events)} duplicates`
      )

      // Started again: it catches up and is in every partition's ISR again.
      await cluster.start()
      await eventually(
        async () => {
          const layout = await topicLayout(cluster.brokers, topic).catch(() => undefined)
          return layout !== undefined && layout.partitions.every((p) => p.isr.length === 3)
        },
        60_000,
        500
      )
      const after = load(server)
      await sleep(1_000)
      const more = await after.stop()
      expect(more.filter((w) => w.status !== 201)).toEqual([])
      await expectDelivered(cluster.brokers, [...writes, ...more])
    },
    300_000
  )
})
