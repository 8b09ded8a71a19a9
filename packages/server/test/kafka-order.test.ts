/**
 * Per-key order in Kafka with two server processes on one database (README: Events):
 * each key is written by one sequential client that alternates between the two
 * servers, all keys at once; in the key's partition the events come in the
 * order the client stored them (the first copy of each: delivery is at least once).
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import {
  allOf,
  consumeUntil,
  dataHeaders,
  freshDatabase,
  freshTopic,
  kafka,
  kafkaAvailable,
  postgresAvailable,
  recordOf,
  type ServerProcess,
  startServer
} from "@strata/testing"

const available = kafkaAvailable() && await postgresAvailable()

describe.skipIf(!available)("two server processes on one database, publishing to Kafka", () => {
  const topic = freshTopic("order")
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let servers: Array<ServerProcess> = []
  beforeAll(async () => {
    db = await freshDatabase()
    const env = {
      DATABASE_URL: db.url,
      KAFKA_BROKERS: kafka.brokers,
      KAFKA_TOPIC: topic,
      KAFKA_TOPIC_PARTITIONS: "4",
      KAFKA_TOPIC_REPLICATION: "1",
      OUTBOX_POLL_INTERVAL: "5ms",
      OUTBOX_BATCH: "7" // many small batches: the relay lease changes hands often
    }
    const first = await startServer(env) // migrates and makes the key before the second starts
    servers = [first, await startServer(env)]
  }, 120_000)
  afterAll(async () => {
    for (const server of servers) server.child.kill("SIGKILL")
    await Promise.all(servers.map((s) => s.exited))
    await db?.drop()
  })

  it("keep each key's commit order under concurrent writes to both", async () => {
    const KEYS = 6
    const WRITES = 30
    const written = new Map<string, Array<string>>() // key → ids in the order they were stored
    await Promise.all(Array.from({ length: KEYS }, async (_, k) => {
      const key = `key-${k}`
      const ids: Array<string> = []
      for (let i = 0; i < WRITES; i++) {
        const server = servers[(i + k) % 2]
        const res = await fetch(`${server.base}/data`, {
          method: "POST",
          headers: dataHeaders(server),
          body: JSON.stringify({ stream: "ordered", key, data: { i } })
        })
        expect(res.status).toBe(201)
        ids.push((await recordOf(res)).id)
      }
      written.set(key, ids)
    }))
    const all = [...written.values()].flat()
    const events = await consumeUntil(kafka.brokers, topic, allOf(all))
    for (const [key, ids] of written) {
      const mine = events.filter((e) => e.key === `test/ordered/${key}`)
      expect(new Set(mine.map((e) => e.partition)).size).toBe(1)
      const firsts = mine
        .toSorted((a, b) => Number(a.offset - b.offset))
        .map((e) => e.headers.get("strata-record-id")!)
        .filter((id, i, list) => list.indexOf(id) === i)
      expect(firsts, key).toEqual(ids)
    }
  }, 120_000)
})
