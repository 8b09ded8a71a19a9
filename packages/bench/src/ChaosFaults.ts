/**
 * The faults `bench chaos` injects, each with how it is healed and what Strata
 * promises while it lasts (README: Endurance). They act on the rig Chaos.ts
 * builds: a PostgreSQL cluster of its own behind a TCP proxy, a redis-server of
 * its own, a Kafka broker of its own and two Strata processes.
 */
import type { Expectations } from "./ChaosReport.ts"

export const FAULT_NAMES = [
  "pg-stop",
  "pg-silent",
  "redis-kill",
  "redis-hang",
  "kafka-kill",
  "kafka-hang",
  "strata-kill"
] as const
export type FaultName = (typeof FAULT_NAMES)[number]

/** What a fault can act on. */
export interface Rig {
  /** `pg_ctl stop -m immediate` / `pg_ctl start` of the cluster. */
  readonly stopPostgres: () => Promise<void>
  readonly startPostgres: () => Promise<void>
  /** The proxy between the servers and PostgreSQL. */
  readonly silencePostgres: () => void
  readonly restorePostgres: () => void
  readonly signalRedis: (signal: NodeJS.Signals) => void
  readonly startRedis: () => Promise<void>
  /** Undefined when the run uses a broker it does not own (--kafka-brokers) or none. */
  readonly broker:
    | { readonly signal: (signal: NodeJS.Signals) => void; readonly start: () => Promise<void> }
    | undefined
  /** The second Strata process (the load balancer stops sending to it when it stops answering). */
  readonly killSecondServer: () => void
  readonly restartSecondServer: () => Promise<void>
  /** The fault's own sign of health after it is healed. */
  readonly eventsFlowing: () => Promise<boolean>
  readonly secondServerServing: () => boolean
}

export interface Fault {
  readonly name: FaultName
  /** What is done, for the run's header. */
  readonly description: string
  readonly inject: (rig: Rig) => Promise<void>
  readonly heal: (rig: Rig) => Promise<void>
  /** Polled after healing, with the answers, to say the fault is over. */
  readonly ready: (rig: Rig) => Promise<boolean>
  readonly expect: Expectations
  readonly needsOwnBroker: boolean
}

const always = () => Promise.resolve(true)
const databaseDown: Expectations = {
  cachedReadsServe: true,
  no5xx: false,
  writesUnaffected: false,
  onlyConnectionsLost: false
}
const cacheDown: Expectations = {
  cachedReadsServe: false,
  no5xx: true,
  writesUnaffected: true,
  onlyConnectionsLost: false
}
const brokerDown: Expectations = cacheDown

const broker = (rig: Rig) => {
  if (rig.broker === undefined) throw new Error("this fault needs a Kafka broker of the run's own")
  return rig.broker
}

export const FAULTS: Readonly<Record<FaultName, Fault>> = {
  "pg-stop": {
    name: "pg-stop",
    description: "PostgreSQL stopped with `pg_ctl stop -m immediate`, then started",
    inject: (rig) => rig.stopPostgres(),
    heal: (rig) => rig.startPostgres(),
    ready: always,
    expect: databaseDown,
    needsOwnBroker: false
  },
  "pg-silent": {
    name: "pg-silent",
    description:
      "PostgreSQL unreachable without a reset: the proxy in front of it stops forwarding, then forwards again",
    inject: async (rig) => rig.silencePostgres(),
    heal: async (rig) => rig.restorePostgres(),
    ready: always,
    expect: databaseDown,
    needsOwnBroker: false
  },
  "redis-kill": {
    name: "redis-kill",
    description: "Redis killed (SIGKILL), then started empty",
    inject: async (rig) => rig.signalRedis("SIGKILL"),
    heal: (rig) => rig.startRedis(),
    ready: always,
    expect: cacheDown,
    needsOwnBroker: false
  },
  "redis-hang": {
    name: "redis-hang",
    description: "Redis hung (SIGSTOP), then continued (SIGCONT)",
    inject: async (rig) => rig.signalRedis("SIGSTOP"),
    heal: async (rig) => rig.signalRedis("SIGCONT"),
    ready: always,
    expect: cacheDown,
    needsOwnBroker: false
  },
  "kafka-kill": {
    name: "kafka-kill",
    description:
      "the Kafka broker killed (SIGKILL), then started; ready when the outbox's oldest event is under 2 s old",
    inject: async (rig) => broker(rig).signal("SIGKILL"),
    heal: (rig) => broker(rig).start(),
    ready: (rig) => rig.eventsFlowing(),
    expect: brokerDown,
    needsOwnBroker: true
  },
  "kafka-hang": {
    name: "kafka-hang",
    description:
      "the Kafka broker hung (SIGSTOP), then continued; ready when the outbox's oldest event is under 2 s old",
    inject: async (rig) => broker(rig).signal("SIGSTOP"),
    heal: async (rig) => broker(rig).signal("SIGCONT"),
    ready: (rig) => rig.eventsFlowing(),
    expect: brokerDown,
    needsOwnBroker: true
  },
  "strata-kill": {
    name: "strata-kill",
    description:
      "one of the two Strata processes killed (SIGKILL), then started; ready when the balancer sends to it again",
    inject: async (rig) => rig.killSecondServer(),
    heal: (rig) => rig.restartSecondServer(),
    ready: async (rig) => rig.secondServerServing(),
    // Requests in flight on the killed process lose their connection (not acknowledged, so not lost);
    // every other request is answered by the one left, or by both again.
    expect: { cachedReadsServe: false, no5xx: true, writesUnaffected: false, onlyConnectionsLost: true },
    needsOwnBroker: false
  }
}

export const parseFaults = (text: string): ReadonlyArray<FaultName> => {
  const names = text.split(",").map((s) => s.trim()).filter((s) => s !== "")
  if (names.length === 0) throw new Error(`--faults takes a comma-separated list of ${FAULT_NAMES.join(", ")}`)
  for (const name of names) {
    if (!(FAULT_NAMES as ReadonlyArray<string>).includes(name)) {
      throw new Error(`--faults: unknown fault ${JSON.stringify(name)}; the faults are ${FAULT_NAMES.join(", ")}`)
    }
  }
  return names as Array<FaultName>
}
