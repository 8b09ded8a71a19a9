/**
 * The real Apache Kafka broker of the tests. `./scripts/test` starts one with
 * `scripts/kafka` (a plain and a SASL listener) and passes it on in
 * TEST_KAFKA_BROKERS, TEST_KAFKA_SASL_BROKERS, TEST_KAFKA_SASL_USER and
 * TEST_KAFKA_SASL_PASSWORD. Suites that kill or stop a broker start their own
 * (`startBroker`), or a three-broker cluster (`startKafkaCluster`). Without the
 * shared broker a suite is skipped locally and fails under CI=true (Services.ts).
 */
import { Admin, ConfigResourceTypes, Consumer, type Message, stringDeserializers } from "@platformatic/kafka"
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { unavailable } from "./Services.ts"

const SCRIPT = join(import.meta.dirname, "../../../scripts/kafka")

export const kafka = {
  brokers: process.env.TEST_KAFKA_BROKERS ?? "",
  saslBrokers: process.env.TEST_KAFKA_SASL_BROKERS ?? "",
  saslUser: process.env.TEST_KAFKA_SASL_USER ?? "",
  saslPassword: process.env.TEST_KAFKA_SASL_PASSWORD ?? ""
}

/** True when the shared broker is there; otherwise the rule of `unavailable`. */
export const kafkaAvailable = (): boolean =>
  kafka.brokers !== "" ||
  unavailable(
    "The Kafka broker (TEST_KAFKA_BROKERS is unset; ./scripts/test starts one with scripts/kafka)",
    "the Kafka suites"
  )

/** A topic name of its own for each suite, so suites sharing the broker never see each other's events. */
export const freshTopic = (name: string) => `strata.test.${name}.${randomBytes(4).toString("hex")}`

const run = (args: ReadonlyArray<string>) =>
  new Promise<string>((resolve, reject) =>
    execFile(
      SCRIPT,
      args,
      { env: process.env },
      (error, stdout, stderr) =>
        error === null ? resolve(stdout) : reject(new Error(`scripts/kafka ${args[0]} failed: ${stderr}${stdout}`))
    )
  )

export interface Broker {
  readonly brokers: string
  readonly pid: () => number
  readonly signal: (signal: NodeJS.Signals) => void
  /** Starts it again after a kill: same port, same storage. */
  readonly start: () => Promise<void>
  readonly stop: () => Promise<void>
}

/** A broker of the suite's own, in a fresh directory (deleted on stop). */
export const startBroker = async (): Promise<Broker> => {
  const dir = mkdtempSync(join(tmpdir(), "strata-kafka-"))
  const start = async () => {
    await run(["start", "--dir", dir])
  }
  const out = await run(["start", "--dir", dir])
  const brokers = /^KAFKA_BROKERS=(.+)$/m.exec(out)![1]
  const pid = () => Number(readFileSync(join(dir, "pid"), "utf8").trim())
  return {
    brokers,
    pid,
    signal: (signal) => process.kill(pid(), signal),
    start,
    stop: async () => {
      await run(["stop", "--dir", dir]).catch(() => undefined)
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

export interface KafkaCluster {
  /** The three brokers' addresses, comma-separated: a value for KAFKA_BROKERS. */
  readonly brokers: string
  readonly addresses: ReadonlyArray<string>
  /** The JVM's pid of node 1, 2 or 3 (its node id). */
  readonly pid: (node: number) => number
  readonly signal: (node: number, signal: NodeJS.Signals) => void
  /** Starts the nodes that are not running (same ports, same storage) and waits for all three. */
  readonly start: () => Promise<void>
  readonly stop: () => Promise<void>
}

/** Three KRaft brokers of the suite's own (`scripts/kafka start --nodes 3`), in a fresh directory (deleted on stop). */
export const startKafkaCluster = async (): Promise<KafkaCluster> => {
  const dir = mkdtempSync(join(tmpdir(), "strata-kafka-cluster-"))
  const out = await run(["start", "--dir", dir, "--nodes", "3"]).catch(async (error) => {
    await run(["stop", "--dir", dir]).catch(() => undefined)
    rmSync(dir, { recursive: true, force: true })
    throw error
  })
  const brokers = /^KAFKA_BROKERS=(.+)$/m.exec(out)![1]
  const pid = (node: number) => Number(readFileSync(join(dir, `node-${node}`, "pid"), "utf8").trim())
  return {
    brokers,
    addresses: brokers.split(","),
    pid,
    signal: (node, signal) => process.kill(pid(node), signal),
    start: async () => {
      await run(["start", "--dir", dir])
    },
    stop: async () => {
      await run(["stop", "--dir", dir]).catch(() => undefined)
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** How `topic` is laid out: each partition's leader, replicas and in-sync replicas (broker ids). */
export const topicLayout = async (brokers: string, topic: string) => {
  const admin = new Admin({ clientId: "strata-test", bootstrapBrokers: brokers.split(",") })
  try {
    const metadata = await admin.metadata({ topics: [topic], forceUpdate: true })
    return {
      brokers: [...metadata.brokers.keys()].toSorted(),
      partitions: metadata.topics.get(topic)!.partitions.map((p) => ({
        leader: p.leader,
        replicas: p.replicas.toSorted(),
        isr: p.isr.toSorted()
      }))
    }
  } finally {
    await admin.close()
  }
}

/** The value of each of `names` in `topic`'s configuration (its own or the broker's default). */
export const topicConfig = async (brokers: string, topic: string, names: ReadonlyArray<string>) => {
  const admin = new Admin({ clientId: "strata-test", bootstrapBrokers: brokers.split(",") })
  try {
    const [description] = await admin.describeConfigs({
      resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: topic, configurationKeys: [...names] }]
    })
    return Object.fromEntries(description.configs.map((c) => [c.name, c.value]))
  } finally {
    await admin.close()
  }
}

export const partitionsOf = async (brokers: string, topic: string): Promise<number | undefined> => {
  const admin = new Admin({ clientId: "strata-test", bootstrapBrokers: [brokers] })
  try {
    const topics = await admin.listTopics()
    if (!topics.includes(topic)) return undefined
    return (await admin.metadata({ topics: [topic] })).topics.get(topic)?.partitionsCount
  } finally {
    await admin.close()
  }
}

export type Event = Message<string, string, string, string>

/**
 * Reads `topic` from the beginning until `done` holds for what was read (or
 * `timeoutMs` passes), and answers every message read, in the order of each partition.
 */
export const consumeUntil = async (
  brokers: string,
  topic: string,
  done: (events: ReadonlyArray<Event>) => boolean,
  timeoutMs = 60_000
): Promise<Array<Event>> => {
  const consumer = new Consumer({
    groupId: `strata-test-${randomBytes(6).toString("hex")}`,
    clientId: "strata-test",
    bootstrapBrokers: brokers.split(","),
    deserializers: stringDeserializers,
    maxWaitTime: 200
  })
  const events: Array<Event> = []
  try {
    const stream = await consumer.consume({ topics: [topic], mode: "earliest", autocommit: false })
    const deadline = setTimeout(() => stream.destroy(), timeoutMs)
    try {
      if (done(events)) return events
      for await (const message of stream) {
        events.push(message)
        if (done(events)) break
      }
    } catch {
      // destroyed at the deadline: answer what was read
    } finally {
      clearTimeout(deadline)
      await stream.close().catch(() => undefined)
    }
    return events
  } finally {
    await consumer.close(true).catch(() => undefined)
  }
}

/** The record ids of the events read. */
export const recordIds = (events: ReadonlyArray<Event>) => events.map((e) => e.headers.get("strata-record-id")!)

/** True when every id in `ids` has an event among `events`. */
export const allOf = (ids: ReadonlyArray<string>) => (events: ReadonlyArray<Event>) => {
  const seen = new Set(recordIds(events))
  return ids.every((id) => seen.has(id))
}
