/**
 * `bench chaos`: the open-loop mix keeps running while each fault
 * (ChaosFaults.ts) is injected, held, then healed; then every acknowledged
 * write is checked.
 *
 * The rig is the run's own: a PostgreSQL cluster (initdb in a temporary
 * directory, so the machine's own is never stopped) reached through a TCP
 * proxy, a redis-server, a Kafka broker (or `--kafka-brokers`: a broker it
 * does not own, which it never harms) and two Strata processes on that database.
 * The load goes to both, round robin, as a load balancer would send it: one
 * that refuses a connection gets no more until its /health/ready answers 200.
 *
 * Each fault: `--settle` seconds of steady load, the fault for `--hold`
 * seconds, then it is healed (the dependency started again and answering, or
 * continued), and its window lasts until no request due after the healing failed
 * for 3 s and the fault's own sign of health came (events flowing, the process
 * serving), or `--recover` seconds passed. The recovery time is Strata's part:
 * from the healing's end, not counting how long a dependency took to start.
 *
 * At the end, with the load stopped: the outbox gets 60 s to empty; every
 * write answered 201 must then be readable by id (200), in its stream's list,
 * and have its event in Kafka or still in the outbox. A write that is not is
 * lost, and counted against the window it was due in. The table: per fault,
 * requests, 2xx, 503, other, lost and the recovery time; the checks PASS or
 * FAIL; the exit code 1 when any fails.
 */
import { Consumer, stringDeserializers } from "@platformatic/kafka"
import { Effect, Option } from "effect"
import { randomBytes } from "node:crypto"
import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs"
import { availableParallelism, loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { Pool } from "undici"
import { attempt, BenchError } from "./BenchError.ts"
import { type FaultName, FAULTS, type Rig } from "./ChaosFaults.ts"
import { type Answer, chaosTable, checkLine, faultChecks, type FaultRun, rowsOf } from "./ChaosReport.ts"
import { ownBroker } from "./Kafka.ts"
import { failureOf, makeSender, writeRecords } from "./Load.ts"
import { describeMix, type Kind, kindAt, type Mix, requestMaker } from "./LoadMix.ts"
import { runSchedule, systemClock } from "./LoadSchedule.ts"
import { type Auth, count, readAll } from "./Measure.ts"
import { psql } from "./Postgres.ts"
import { redisProcess } from "./RedisProcess.ts"
import { pgProgram, scaleCluster } from "./ScaleCluster.ts"
import { STREAMS } from "./Seed.ts"
import { benchKey, freePort, HOST, serverEnv, type ServerProcess, serverProcess } from "./Server.ts"
import { tcpProxy } from "./TcpProxy.ts"

export const DEFAULT_CHAOS_MIX = "get-hot=60,range=10,post=20,batch=10"
/** The servers' request deadline (their default), and what the checks hold answers to. */
const REQUEST_TIMEOUT_MS = 10_000
/** How long the outbox gets to empty once the load stops. */
const DRAIN_LIMIT_S = 60
/** A fault is over once no request due after its healing has failed for this long. */
const QUIET_MS = 3_000
/** Events are flowing again when the outbox's oldest event is younger than this. */
const FLOWING_AGE_S = 2

export interface ChaosOptions {
  readonly faults: ReadonlyArray<FaultName>
  readonly rate: number
  readonly settle: number
  readonly hold: number
  readonly recover: number
  readonly mix: Mix
  readonly connections: number
  readonly timeout: number
  readonly hotIds: number
  /** A broker the run does not own: no Kafka faults, a topic of the run's own. */
  readonly kafkaBrokers: Option.Option<string>
}

const progress = (message: string) => console.error(`bench chaos: ${message}`)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The servers' outbox age, asked of PostgreSQL directly (not through the proxy). */
const outboxAgeS = (databaseUrl: string): Promise<number> =>
  psql(databaseUrl, "SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM outbox").then(Number)

/**
 * Sends to two servers round robin; a server whose connection fails is left
 * out until its /health/ready answers 200 (checked every 500 ms).
 */
const makeBalancer = (servers: ReadonlyArray<ServerProcess>, auth: Auth, options: ChaosOptions) => {
  const senders = servers.map((s) => makeSender(s.base, auth, options))
  const up = servers.map(() => true)
  let next = 0
  let checking = false
  const readmit = setInterval(() => {
    if (checking || up.every((u) => u)) return
    checking = true
    void Promise.all(servers.map(async (s, i) => {
      if (up[i]) return
      const status = await fetch(`${s.base}/health/ready`, { signal: AbortSignal.timeout(1_000) })
        .then((r) => r.status, () => 0)
      if (status === 200) up[i] = true
    })).finally(() => checking = false)
  }, 500)
  return {
    up: (i: number) => up[i],
    send: async (request: Parameters<(typeof senders)[number]["send"]>[0]) => {
      let i = next++ % senders.length
      if (!up[i]) i = up.findIndex((u) => u)
      if (i < 0) i = 0
      try {
        return await senders[i].send(request)
      } catch (e) {
        if (failureOf(e) === "connection") up[i] = false
        throw e
      }
    },
    close: async () => {
      clearInterval(readmit)
      await Promise.all(senders.map((s) => s.close()))
    }
  }
}

/** Every record id a topic holds, with how many events each has; reads until `want` are all in and 3 s pass quiet. */
const eventCounts = async (
  brokers: string,
  topic: string,
  want: ReadonlySet<string>,
  timeoutMs: number
): Promise<Map<string, number>> => {
  const consumer = new Consumer({
    groupId: `strata-chaos-${randomBytes(6).toString("hex")}`,
    clientId: "strata-chaos",
    bootstrapBrokers: brokers.split(","),
    deserializers: stringDeserializers,
    maxWaitTime: 200
  })
  const counts = new Map<string, number>()
  let missing = want.size
  try {
    const stream = await consumer.consume({ topics: [topic], mode: "earliest", autocommit: false })
    const deadline = Date.now() + timeoutMs
    let lastAt = Date.now()
    const watchdog = setInterval(() => {
      if (Date.now() > deadline || (missing === 0 && Date.now() - lastAt > 3_000)) stream.destroy()
    }, 250)
    try {
      for await (const message of stream) {
        lastAt = Date.now()
        const id = message.headers.get("strata-record-id")
        if (id === undefined) continue
        const n = (counts.get(id) ?? 0) + 1
        counts.set(id, n)
        if (n === 1 && want.has(id)) missing--
      }
    } catch {
      // destroyed by the watchdog: answer what was read
    } finally {
      clearInterval(watchdog)
      await stream.close().catch(() => undefined)
    }
    return counts
  } finally {
    await consumer.close(true).catch(() => undefined)
  }
}

/** The ids among `ids` that GET /data/{id} does not answer with 200. */
const unreadable = async (base: string, auth: Auth, ids: ReadonlyArray<string>): Promise<Set<string>> => {
  const pool = new Pool(base, { connections: 32 })
  const bad = new Set<string>()
  let next = 0
  const lane = async () => {
    while (next < ids.length) {
      const id = ids[next++]
      const res = await pool.request({ path: `/data/${id}`, method: "GET", headers: auth }).catch(() => undefined)
      if (res === undefined) bad.add(id)
      else {
        await res.body.dump()
        if (res.statusCode !== 200) bad.add(id)
      }
    }
  }
  try {
    await Promise.all(Array.from({ length: 32 }, lane))
  } finally {
    await pool.close()
  }
  return bad
}

/** Every id listed in `streams`, page by page (1,000 a page) through GET /data. */
const listedIds = async (base: string, auth: Auth, streams: ReadonlyArray<string>): Promise<Set<string>> => {
  const ids = new Set<string>()
  for (const stream of streams) {
    let cursor: string | null = null
    do {
      const url = new URL(`${base}/data`)
      url.searchParams.set("stream", stream)
      url.searchParams.set("limit", "1000")
      if (cursor !== null) url.searchParams.set("cursor", cursor)
      const res = await fetch(url, { headers: auth, signal: AbortSignal.timeout(30_000) })
      if (res.status !== 200) throw new Error(`GET ${url.pathname}${url.search} answered ${res.status}`)
      const page = (await res.json()) as { records: Array<{ id: string }>; nextCursor: string | null }
      for (const r of page.records) ids.add(r.id)
      cursor = page.nextCursor
    } while (cursor !== null)
  }
  return ids
}

interface Acknowledged {
  readonly stream: string
  readonly due: number
}

/** Acknowledged records in a 201 answer's body: one record, or a batch's `records`. */
const createdOf = (kind: Kind, body: ArrayBuffer): ReadonlyArray<{ id: string; stream: string }> => {
  const parsed = JSON.parse(Buffer.from(body).toString("utf8")) as
    | { id: string; stream: string }
    | { records: Array<{ id: string; stream: string }> }
  return kind === "batch" && "records" in parsed ? parsed.records : [parsed as { id: string; stream: string }]
}

export const runChaos = (options: ChaosOptions): Effect.Effect<void, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const faults = options.faults.map((name) => FAULTS[name])
    const ownKafka = Option.isNone(options.kafkaBrokers)
    const needing = faults.filter((f) => f.needsOwnBroker && !ownKafka)
    if (needing.length > 0) {
      return yield* new BenchError({
        message: `${needing.map((f) => f.name).join(", ")} need a broker of the run's own: leave out --kafka-brokers`
      })
    }
    if (options.mix.some((m) => m.kind === "get-cold")) {
      return yield* new BenchError({
        message: "--mix: bench chaos has no get-cold records; use get-hot, range, post, batch"
      })
    }
    const runDir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "strata-chaos-"))),
      // Kept when a check failed: the servers' logs say why.
      (dir) =>
        Effect.sync(() =>
          process.exitCode === 1
            ? progress(`kept ${dir} (the servers' logs)`)
            : rmSync(dir, { recursive: true, force: true })
        )
    )

    const port = yield* freePort
    const cluster = yield* scaleCluster({
      parent: tmpdir(),
      reuse: undefined,
      keep: false,
      port,
      sharedBuffers: "128MB",
      effectiveCacheSize: "1GB",
      rowsToLoad: () => 0,
      log: progress
    })
    yield* attempt(() => psql(cluster.urlOf("postgres"), "CREATE DATABASE strata"))
    const directUrl = cluster.urlOf("strata")
    const dataDir = join(cluster.dir, "data")
    const proxy = yield* tcpProxy({ host: HOST, port })
    const proxiedUrl = `postgres://postgres@${HOST}:${proxy.port}/strata`
    const redis = yield* redisProcess
    const broker = ownKafka ? yield* ownBroker(progress) : undefined
    const brokers = broker?.brokers ?? Option.getOrThrow(options.kafkaBrokers)
    const topic = `strata.chaos.${randomBytes(4).toString("hex")}`

    const serverLog = join(runDir, "servers.log")
    const logFd = yield* Effect.acquireRelease(
      Effect.sync(() => openSync(serverLog, "a")),
      (fd) => Effect.sync(() => closeSync(fd))
    )
    const env = serverEnv(proxiedUrl, {
      REDIS_URL: redis.url,
      KAFKA_BROKERS: brokers,
      KAFKA_TOPIC: topic,
      KAFKA_TOPIC_REPLICATION: "1",
      KAFKA_TOPIC_PARTITIONS: "3"
    })
    progress("starting two Strata processes on the cluster (through the proxy)")
    const servers = [
      yield* serverProcess({ env, log: progress, output: logFd }),
      yield* serverProcess({ env, log: progress, output: logFd })
    ]
    const auth = yield* benchKey(directUrl)
    let hot: Array<string> = []
    if (options.mix.some((m) => m.kind === "get-hot")) {
      progress(`writing ${count(options.hotIds)} records for get-hot and reading each through both processes`)
      hot = yield* attempt((signal) => writeRecords(servers[0].base, auth, options.hotIds, signal))
      for (const s of servers) yield* attempt((signal) => readAll(s.base, auth, hot, signal))
    }

    const pgLog = join(cluster.dir, "postgres.log")
    const rig: Rig = {
      stopPostgres: () =>
        Effect.runPromise(Effect.asVoid(pgProgram("pg_ctl", ["-D", dataDir, "-m", "immediate", "-w", "stop"]))),
      startPostgres: () =>
        Effect.runPromise(Effect.asVoid(pgProgram("pg_ctl", ["-D", dataDir, "-l", pgLog, "-w", "-t", "60", "start"]))),
      silencePostgres: proxy.silence,
      restorePostgres: proxy.restore,
      signalRedis: redis.signal,
      startRedis: redis.start,
      broker: broker === undefined
        ? undefined
        : { signal: broker.signal, start: () => Effect.runPromise(broker.start()) },
      killSecondServer: () => servers[1].signal("SIGKILL"),
      restartSecondServer: () => servers[1].restart(),
      eventsFlowing: () => outboxAgeS(directUrl).then((age) => age < FLOWING_AGE_S, () => false),
      secondServerServing: () => balancer.up(1)
    }

    const say = (line: string) => console.log(line)
    say(
      `machine: ${availableParallelism()} cores; load average ${
        loadavg().slice(0, 2).map((n) => n.toFixed(2)).join(", ")
      }`
    )
    say(
      `rig: PostgreSQL ${cluster.version} of its own (port ${port}) behind a TCP proxy, redis-server of its own, ${
        broker === undefined ? `the Kafka broker at ${brokers} (not harmed)` : "a Kafka broker of its own"
      }, topic ${topic}, two Strata processes (${servers.map((s) => s.base).join(", ")}); their logs in ${serverLog}`
    )
    say(
      `load: ${count(options.rate)} req/s open loop, mix ${
        describeMix(options.mix)
      }; each fault after ${options.settle} s steady, held ${options.hold} s, then up to ${options.recover} s to recover`
    )
    for (const f of faults) say(`  ${f.name}: ${f.description}`)

    const balancer = makeBalancer(servers, auth, options)
    const answers: Array<Answer> = []
    const acknowledged = new Map<string, Acknowledged>()
    const inFlight = new Map<number, number>()
    let lastFailureDue = -Infinity
    const clock = systemClock
    const start = clock.now()
    const now = () => clock.now() - start
    const maker = requestMaker(hot, [])
    let nextRequest = 0
    const fire = async (kind: Kind, due: number) => {
      const id = nextRequest++
      const sent = now()
      inFlight.set(id, due)
      try {
        const res = await balancer.send(maker.make(kind))
        answers.push({ kind, due, sent, done: now(), status: res.statusCode })
        if (res.statusCode === 201) {
          for (const r of createdOf(kind, res.body)) acknowledged.set(r.id, { stream: r.stream, due })
        } else if (res.statusCode < 200 || res.statusCode >= 300) lastFailureDue = Math.max(lastFailureDue, due)
      } catch (e) {
        answers.push({ kind, due, sent, done: now(), status: 0, failure: failureOf(e) })
        lastFailureDue = Math.max(lastFailureDue, due)
      } finally {
        inFlight.delete(id)
      }
    }

    // The schedule runs until the faults are done; it is long enough for all of them at their limits.
    const longest = faults.length * (options.settle + options.hold + options.recover + 120) + options.settle
    const stopLoad = new AbortController()
    const load = runSchedule({
      steps: [{ rate: options.rate, seconds: longest }],
      clock,
      signal: stopLoad.signal,
      send: (_k, _i, intended) => void fire(kindAt(options.mix, Math.random()), intended - start)
    })

    const runs: Array<FaultRun> = []
    const timeline = Effect.promise(async () => {
      for (const fault of faults) {
        await sleep(options.settle * 1000)
        progress(`${fault.name}: injecting`)
        const injectedAt = now()
        await fault.inject(rig)
        await sleep(options.hold * 1000)
        progress(`${fault.name}: healing`)
        const healStartedAt = now()
        await fault.heal(rig)
        const healedAt = now()
        const limit = healedAt + options.recover * 1000
        let readyAt: number | undefined
        let endedAt: number | undefined
        while (now() < limit) {
          if (readyAt === undefined && await fault.ready(rig)) readyAt = now()
          const oldest = Math.min(Infinity, ...inFlight.values())
          const quiet = now() - Math.max(lastFailureDue, healedAt) >= QUIET_MS && now() - oldest < QUIET_MS
          if (readyAt !== undefined && quiet) {
            endedAt = now()
            break
          }
          await sleep(250)
        }
        const recovered = endedAt !== undefined
        runs.push({
          fault: fault.name,
          injectedAt,
          healStartedAt,
          healedAt,
          readyAt,
          endedAt: endedAt ?? now(),
          recovered
        })
        progress(
          `${fault.name}: ${
            recovered ? `over ${((now() - healedAt) / 1000).toFixed(1)} s after healing` : "NOT over within the limit"
          }`
        )
      }
      await sleep(options.settle * 1000)
    })
    yield* timeline
    stopLoad.abort()
    yield* Effect.promise(() => load)
    const deadline = clock.now() + options.timeout * 1000 + 1_000
    while (inFlight.size > 0 && clock.now() < deadline) yield* Effect.sleep("50 millis")
    yield* Effect.promise(() => balancer.close())

    progress(`the load stopped; ${count(acknowledged.size)} acknowledged records to check`)
    const drainStart = Date.now()
    let left = yield* Effect.promise(() => psql(directUrl, "SELECT count(*) FROM outbox").then(Number, () => -1))
    while (left !== 0 && Date.now() - drainStart < DRAIN_LIMIT_S * 1000) {
      yield* Effect.sleep("1 second")
      left = yield* Effect.promise(() => psql(directUrl, "SELECT count(*) FROM outbox").then(Number, () => -1))
    }
    const ids = [...acknowledged.keys()]
    const inOutbox = new Set(
      (yield* attempt(() => psql(directUrl, "SELECT record_id FROM outbox"))).split("\n").filter((s) => s !== "")
    )
    progress("reading the topic from the start")
    const events = yield* attempt(() => eventCounts(brokers, topic, new Set(ids), 120_000))
    progress("reading every acknowledged record by id, and every stream's list")
    const notReadable = yield* attempt(() => unreadable(servers[0].base, auth, ids))
    const listed = yield* attempt(() => listedIds(servers[0].base, auth, STREAMS))
    const lost = ids.filter((id) => notReadable.has(id) || !listed.has(id) || (!events.has(id) && !inOutbox.has(id)))
    const duplicates = ids.filter((id) => (events.get(id) ?? 0) > 1).length

    const rows = rowsOf(answers, runs, lost.map((id) => acknowledged.get(id)!.due))
    say("")
    say(chaosTable(rows))
    say(
      "a fault's row: the requests in flight from its injection to the end of its recovery; recovery: from the end of " +
        "healing (the dependency back, the killed process ready) to the last failed request due after it, or to " +
        "its own sign of health; slowest: from the send"
    )
    const checks = [
      ...runs.flatMap((run, i) =>
        faultChecks(run, rows[i + 1], answers, FAULTS[run.fault as FaultName].expect, {
          requestTimeoutMs: REQUEST_TIMEOUT_MS,
          recoverLimitS: options.recover
        }).map((c) => ({ fault: run.fault, check: c }))
      ),
      {
        fault: "steady",
        check: {
          name: "no error without a fault",
          pass: rows[0].ok === rows[0].requests,
          detail: `${count(rows[0].requests - rows[0].ok)} of ${count(rows[0].requests)} not 2xx`
        }
      },
      {
        fault: "end",
        check: {
          name: "every acknowledged write readable, listed and with its event",
          pass: lost.length === 0,
          detail: `${count(ids.length)} acknowledged: ${count(notReadable.size)} not readable, ${
            count(ids.filter((id) => !listed.has(id)).length)
          } not listed, ${count(ids.filter((id) => !events.has(id) && !inOutbox.has(id)).length)} without an event; ${
            count(duplicates)
          } with more than one event (delivery is at least once); outbox ${left === 0 ? "drained" : `${left} left`}`
        }
      }
    ]
    say("")
    for (const { check, fault } of checks) say(checkLine(fault, check))
    const passed = checks.every((c) => c.check.pass)
    say(`${passed ? "PASS" : "FAIL"}: ${checks.filter((c) => c.check.pass).length}/${checks.length} checks`)
    if (!passed) process.exitCode = 1
  }))
