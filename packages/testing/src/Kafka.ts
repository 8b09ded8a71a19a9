/**
 * The real Apache Kafka broker of the tests. `./scripts/test` starts one with
 * `scripts/kafka` (a plain and a SASL listener) and passes it on in
 * TEST_KAFKA_BROKERS, TEST_KAFKA_SASL_BROKERS, TEST_KAFKA_SASL_USER and
 * TEST_KAFKA_SASL_PASSWORD. Suites that kill or stop a broker start their own
 * (`startBroker`). Without the shared broker a suite is skipped locally and
 * fails under CI=true (Services.ts).
 */
import { Admin, Consumer, type Message, stringDeserializers } from "@platformatic/kafka"
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
    bootstrapBrokers: [brokers],
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
