/**
 * `bench load`: an open-loop load generator. Requests leave on a fixed schedule
 * (LoadSchedule.ts), a constant rate (`--rate N --duration S`) or a ramp
 * (`--ramp FROM:TO:STEP --step-duration S`), whatever the answers do: a request
 * due at t is sent at t even when earlier ones are unanswered, and its latency
 * is measured from t. The requests in flight are as many as the schedule needs,
 * up to `--max-in-flight`; a request due beyond that is not sent and counts as
 * an error, `dropped`. They go over an undici Pool of `--connections`
 * connections without pipelining, so requests beyond the connections wait in
 * the generator's queue, and that wait is part of their latency.
 *
 * The target is a Strata server of its own, as `bench` starts it (a throwaway
 * database, the Redis record cache when Redis answers, a key with no practical
 * rate limit; `--kafka` adds a broker of its own and KAFKA_BROKERS), or a running
 * one (`--url URL --key KEY`). Setup writes `--hot-ids` records through the API
 * and reads each once (get-hot reads those), and makes the records get-cold
 * reads: on its own server loaded with COPY (Seed.ts), so no cache holds them,
 * as many as the schedule will read unless `--cold-ids` says; against `--url`
 * written through the API, which caches them on insert (the Cache-Status counts
 * say what that did).
 *
 * Per step: sent, answered, latency percentiles of the 2xx answers, the P99 over
 * every request due (those without a 2xx counted as slowest), errors by status
 * and failure, and how late the generator itself sent (its own lag on a busy
 * machine). A ramp says per step whether that P99 stayed under 500 ms, prints the
 * highest rate where it did (the knee) and stops after two steps in a row that
 * look failed while they run. Every 10 s, a line of the server's own `/metrics`.
 */
import { Effect, Option } from "effect"
import { availableParallelism, cpus, loadavg, totalmem } from "node:os"
import { Pool } from "undici"
import { attempt, BenchError, errorText } from "./BenchError.ts"
import { cpuPerRequest, readCpu } from "./CpuUsage.ts"
import { kafkaBroker } from "./Kafka.ts"
import {
  BATCH_SIZE,
  describeMix,
  type Kind,
  kindAt,
  loadRecord,
  type Mix,
  type Request,
  requestMaker
} from "./LoadMix.ts"
import {
  failingSoFar,
  type Failure,
  knee,
  P99_TARGET_MS,
  serverLine,
  stepJson,
  stepLine,
  StepStats,
  stepTable
} from "./LoadReport.ts"
import { parseRamp, runSchedule, type Step, stepRequests, systemClock } from "./LoadSchedule.ts"
import { type Auth, CACHE_HIT, count, type Hits, ratio, readAll, sample } from "./Measure.ts"
import { databaseName, query, throwawayDatabase } from "./Postgres.ts"
import { benchCache } from "./Redis.ts"
import { describeSeed, seed } from "./Seed.ts"
import { benchKey, serverEnv, serverProcess } from "./Server.ts"

const METRICS_EVERY_MS = 10_000
/** Cold ids made for a run when `--cold-ids` is not given: bounds on the setup's time. */
const COLD_IDS_MIN = 1_000
const COLD_IDS_MAX_SEEDED = 300_000
const COLD_IDS_MAX_WRITTEN = 20_000

export interface LoadOptions {
  readonly rate: Option.Option<number>
  readonly duration: number
  readonly ramp: Option.Option<string>
  readonly stepDuration: number
  readonly mix: Mix
  readonly connections: number
  readonly maxInFlight: number
  readonly timeout: number
  readonly url: Option.Option<string>
  readonly key: Option.Option<string>
  readonly redisUrl: string
  readonly kafka: boolean
  readonly hotIds: number
  readonly coldIds: Option.Option<number>
  readonly json: boolean
}

export interface Target {
  readonly base: string
  readonly auth: Auth
  /** Set when the target is a server of our own: its database, for COPY. */
  readonly databaseUrl?: string
  /** Set when the target is a server of our own: its pid, for its CPU time. */
  readonly serverPid?: () => number | undefined
  readonly description: ReadonlyArray<string>
}

/** Writes `n` records through POST /data/batch, a few batches at a time; answers their ids. */
export const writeRecords = async (
  base: string,
  auth: Auth,
  n: number,
  signal: AbortSignal
): Promise<Array<string>> => {
  const ids: Array<string> = []
  const per = 100
  let left = n
  const lane = async () => {
    while (left > 0) {
      const size = Math.min(per, left)
      left -= size
      const res = await fetch(`${base}/data/batch`, {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({ records: Array.from({ length: size }, loadRecord) }),
        signal: AbortSignal.any([signal, AbortSignal.timeout(30_000)])
      })
      if (res.status !== 201) throw new Error(`POST /data/batch answered ${res.status}: ${await res.text()}`)
      const body = (await res.json()) as { records: Array<{ id: string }> }
      for (const r of body.records) ids.push(r.id)
    }
  }
  await Promise.all(Array.from({ length: 4 }, lane))
  return ids
}

export const failureOf = (e: unknown): Exclude<Failure, "dropped"> => {
  const code = (e as { code?: unknown } | null)?.code
  // A request still queued when the run gave up on it (the pool destroyed) timed out as well.
  return code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT" ||
      code === "UND_ERR_CONNECT_TIMEOUT" || code === "UND_ERR_DESTROYED" || code === "UND_ERR_ABORTED"
    ? "timeout"
    : "connection"
}

/** The server's own view, fetched apart from the load's connections; a sentence when it does not answer. */
export const scrape = (base: string): Promise<string> =>
  fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5_000) })
    .then((r) => r.text())
    .then(serverLine, (e: unknown) => `no answer from /metrics (${e instanceof Error ? e.message : String(e)})`)

interface Driven {
  readonly steps: ReadonlyArray<StepStats>
  readonly cacheHits: ReadonlyMap<Kind, Hits>
  readonly coldWraps: number
  readonly stoppedEarly: boolean
}

/**
 * The generator's connections to `base`: an undici Pool, one request per
 * connection at a time, `--timeout` on connecting, headers and body. `send`
 * answers once the body is in (its bytes with it), as a client would use it.
 */
export const makeSender = (
  base: string,
  auth: Readonly<Record<string, string>>,
  options: { readonly connections: number; readonly timeout: number }
) => {
  const timeoutMs = options.timeout * 1000
  const pool = new Pool(base, {
    connections: options.connections,
    pipelining: 1,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    connect: { timeout: timeoutMs }
  })
  const getHeaders = { ...auth }
  const postHeaders = { ...auth, "content-type": "application/json" }
  return {
    send: async (request: Request) => {
      const res = await pool.request({
        path: request.path,
        method: request.method,
        headers: request.body === undefined ? getHeaders : postHeaders,
        ...(request.body === undefined ? {} : { body: request.body })
      })
      const body = await res.body.arrayBuffer()
      return { statusCode: res.statusCode, headers: res.headers, body }
    },
    close: () => pool.destroy()
  }
}

/** Runs the schedule against the target; `say` gets the step and server lines as they come. */
const drive = async (
  target: Target,
  options: LoadOptions,
  schedule: ReadonlyArray<Step>,
  ids: { readonly hot: ReadonlyArray<string>; readonly cold: ReadonlyArray<string> },
  say: (line: string) => void,
  signal: AbortSignal
): Promise<Driven> => {
  const sender = makeSender(target.base, target.auth, options)
  const maker = requestMaker(ids.hot, ids.cold)
  const clock = systemClock
  const stats = schedule.map((step, i) => new StepStats(i, step))
  const sentAll = new Set<number>()
  let inFlight = 0
  const settle = (s: StepStats) => {
    if (s.inFlight === 0 && sentAll.has(s.index)) {
      sentAll.delete(s.index)
      say(stepLine(s))
    }
  }

  const fire = async (s: StepStats, kind: Kind, intended: number) => {
    const request = maker.make(kind)
    try {
      const res = await sender.send(request)
      s.recordAnswer(kind, res.statusCode, clock.now() - intended, res.headers["cache-status"] === CACHE_HIT)
    } catch (e) {
      s.recordFailure(failureOf(e))
    } finally {
      inFlight--
      settle(s)
    }
  }

  const cpuNow = () => readCpu(target.serverPid?.())
  let stepCpu = cpuNow()
  const started = clock.now()
  const ticker = setInterval(() => {
    const at = Math.round((clock.now() - started) / 1000)
    const waiting = inFlight
    void scrape(target.base).then((line) => say(`server at +${at} s (${count(waiting)} in flight): ${line}`))
  }, METRICS_EVERY_MS)
  let failedInARow = 0
  let stoppedEarly = false
  try {
    const ran = await runSchedule({
      steps: schedule,
      clock,
      signal,
      send: (k, _index, intended) => {
        const s = stats[k]
        const kind = kindAt(options.mix, Math.random())
        if (inFlight >= options.maxInFlight) return s.recordDropped()
        s.recordSent(kind, clock.now() - intended)
        inFlight++
        void fire(s, kind, intended)
      },
      stepSent: (k) => {
        const cpu = cpuNow()
        stats[k].cpu = cpuPerRequest(stepCpu, cpu, stats[k].sent)
        stepCpu = cpu
        sentAll.add(k)
        settle(stats[k])
        if (Option.isNone(options.ramp)) return true
        failedInARow = failingSoFar(stats[k]) ? failedInARow + 1 : 0
        if (failedInARow < 2 || k === schedule.length - 1) return true
        stoppedEarly = true
        say(`stopping the ramp after step ${k + 1}: two steps in a row with over 1 % of requests failed or slow so far`)
        return false
      }
    })
    // Answers still out get until their timeout, and a little more for the queue.
    const deadline = clock.now() + options.timeout * 1000 + 5_000
    const waiting = () => inFlight > 0 && clock.now() < deadline && !signal.aborted
    while (waiting()) await clock.wait(50)
    return {
      steps: stats.slice(0, ran),
      cacheHits: new Map(
        (["get-hot", "get-cold"] as const).map((kind) => {
          const all = stats.map((s) => s.kinds.get(kind) ?? { ok: 0, hits: 0 })
          return [kind, {
            hits: all.reduce((a, k) => a + k.hits, 0),
            total: all.reduce((a, k) => a + k.ok, 0)
          }] as const
        })
      ),
      coldWraps: maker.coldWraps(),
      stoppedEarly
    }
  } finally {
    clearInterval(ticker)
    await sender.close()
  }
}

const loadProgress = (message: string) => console.error(`bench load: ${message}`)
const progress = loadProgress

/** The schedule the options ask for: exactly one of --rate and --ramp. */
const scheduleOf = (options: LoadOptions): Effect.Effect<ReadonlyArray<Step>, BenchError> =>
  Option.match(options.rate, {
    onNone: () =>
      Option.match(options.ramp, {
        onNone: () =>
          Effect.fail(new BenchError({ message: "give --rate N (with --duration S) or --ramp FROM:TO:STEP" })),
        onSome: (ramp) =>
          Effect.try({
            try: () => parseRamp(ramp, options.stepDuration),
            catch: (e) => new BenchError({ message: errorText(e) })
          })
      }),
    onSome: (rate) =>
      Option.isSome(options.ramp)
        ? Effect.fail(new BenchError({ message: "--rate and --ramp do not go together: give one" }))
        : Effect.succeed([{ rate, seconds: options.duration }])
  })

/**
 * A server of our own, as `bench` starts it (logging at Warn, no access log);
 * with `logTo`, logging as a user's server does by default (Info, an access
 * line per request) into that file descriptor. Released (server, Redis keys,
 * broker, database) when the scope closes.
 */
export const ownServer = (
  options: Pick<LoadOptions, "redisUrl" | "kafka">,
  progress: (message: string) => void = loadProgress,
  logTo?: number
) =>
  Effect.gen(function*() {
    const databaseUrl = yield* throwawayDatabase(progress)
    const cache = yield* benchCache(options.redisUrl, progress)
    const brokers = options.kafka ? yield* kafkaBroker(progress) : undefined
    progress(`starting the server (database ${databaseName(databaseUrl)}, ${cache.description})`)
    const env = serverEnv(databaseUrl, {
      ...cache.env,
      // One broker: the server's topic can have one replica only.
      ...(brokers !== undefined ? { KAFKA_BROKERS: brokers, KAFKA_TOPIC_REPLICATION: "1" } : {}),
      ...(logTo !== undefined ? { ACCESS_LOG: undefined, LOG_LEVEL: undefined } : {})
    })
    const server = yield* serverProcess({ env, log: progress, ...(logTo !== undefined ? { output: logTo } : {}) })
    const base = server.base
    progress(`the server is ready on ${base}`)
    const auth = yield* benchKey(databaseUrl)
    const postgres = yield* query(databaseUrl, "SHOW server_version")
    const target: Target = {
      base,
      auth,
      databaseUrl,
      serverPid: server.pid,
      description: [
        `target: a Strata server of its own on ${base}, PostgreSQL ${postgres} (throwaway database), ` +
        `DATABASE_POOL_MAX ${process.env.DATABASE_POOL_MAX ?? "10 (default)"}, ${
          logTo !== undefined ? "default logging (Info, access log on) to a file" : "LOG_LEVEL=Warn, no access log"
        }`,
        `cache: ${cache.description}`,
        `events: ${brokers !== undefined ? `Kafka broker of its own at ${brokers}` : "no Kafka (outbox only)"}`,
        `the generator, the server, PostgreSQL, Redis${
          brokers !== undefined ? " and Kafka" : ""
        } share this machine's ${availableParallelism()} cores`
      ]
    }
    return target
  })

const givenServer = (url: string, key: Option.Option<string>) =>
  Effect.gen(function*() {
    if (Option.isNone(key)) return yield* new BenchError({ message: "--url needs --key (an API key for it)" })
    const base = url.replace(/\/+$/, "")
    yield* attempt(async () => {
      const res = await fetch(`${base}/health/ready`, { signal: AbortSignal.timeout(5_000) })
      if (res.status !== 200) throw new Error(`${base}/health/ready answered ${res.status}`)
    })
    const target: Target = {
      base,
      auth: { authorization: `Bearer ${key.value}` },
      description: [`target: ${base} (given with --url)`]
    }
    return target
  })

export const runLoad = (options: LoadOptions): Effect.Effect<void, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const schedule = yield* scheduleOf(options)
    if (options.kafka && Option.isSome(options.url)) {
      return yield* new BenchError({ message: "--kafka starts a broker for a server of its own: not with --url" })
    }
    const load = [loadavg()[0], loadavg()[1]]
    const target = yield* Option.match(options.url, {
      onNone: () => ownServer(options),
      onSome: (url) => givenServer(url, options.key)
    })
    const { auth, base } = target

    const hotShare = options.mix.find((m) => m.kind === "get-hot")?.share ?? 0
    const coldShare = options.mix.find((m) => m.kind === "get-cold")?.share ?? 0
    const due = schedule.reduce((a, s) => a + stepRequests(s), 0)
    const coldIds = coldShare === 0 ? 0 : Option.getOrElse(
      options.coldIds,
      () =>
        Math.min(
          target.databaseUrl !== undefined ? COLD_IDS_MAX_SEEDED : COLD_IDS_MAX_WRITTEN,
          Math.max(COLD_IDS_MIN, Math.ceil(due * coldShare * 1.05))
        )
    )
    let hot: Array<string> = []
    let hotCheck: Hits | undefined
    if (hotShare > 0) {
      progress(`writing ${count(options.hotIds)} records through the API for get-hot, then reading each once`)
      hot = yield* attempt((signal) => writeRecords(base, auth, options.hotIds, signal))
      hotCheck = yield* attempt((signal) => readAll(base, auth, hot, signal))
      // The reads that count: the first filled what the insert had not.
      hotCheck = yield* attempt((signal) => readAll(base, auth, sample(hot, 1_000), signal))
      progress(`get-hot ids, Cache-Status on a sample after one read each: ${ratio(hotCheck)}`)
    }
    let cold: ReadonlyArray<string> = []
    let coldHow = ""
    if (coldIds > 0) {
      if (target.databaseUrl !== undefined) {
        const databaseUrl = target.databaseUrl
        progress(`loading ${count(coldIds)} records with COPY for get-cold (never read, so in no cache)`)
        const seeded = yield* attempt(() => seed({ databaseUrl, rows: coldIds, sampleIds: coldIds }))
        progress(describeSeed(seeded))
        cold = sample(seeded.sampleIds, seeded.sampleIds.length)
        coldHow = "loaded with COPY, never read before"
      } else {
        progress(`writing ${count(coldIds)} records through the API for get-cold`)
        cold = yield* attempt((signal) => writeRecords(base, auth, coldIds, signal))
        coldHow = "written through the API, never read before (the server caches records on insert)"
      }
    }

    const human = options.json ? (line: string) => console.error(line) : (line: string) => console.log(line)
    const header = [
      `machine: ${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? "unknown cpu"}), ` +
      `${Math.round(totalmem() / 2 ** 30)} GiB RAM, ${process.platform}/${process.arch}, node ${process.version}; ` +
      `load average before setup ${load.map((n) => n.toFixed(2)).join(", ")} (1, 5 min)`,
      ...target.description,
      `schedule: ${
        schedule.length === 1
          ? `${count(schedule[0].rate)} req/s for ${schedule[0].seconds} s`
          : `ramp ${schedule.map((s) => count(s.rate)).join(", ")} req/s, ${schedule[0].seconds} s each`
      } (${count(due)} requests), open loop: latency from each request's intended send time`,
      `mix: ${describeMix(options.mix)}; batch = ${BATCH_SIZE} records; ${count(hot.length)} get-hot ids, ` +
      `${count(cold.length)} get-cold ids${coldHow !== "" ? ` (${coldHow})` : ""}`,
      `generator: undici Pool, ${options.connections} connections, no pipelining, at most ${
        count(options.maxInFlight)
      } in flight (beyond: dropped), ${options.timeout} s timeout`
    ]
    for (const line of header) human(line)
    const result = yield* attempt((signal) => drive(target, options, schedule, { hot, cold }, human, signal))

    human("")
    human(stepTable(result.steps))
    human(
      `latency in ms from the intended send time, over 2xx answers; "p99 all" over every request due, ` +
        `those without a 2xx counted as slowest; held: p99 all < ${P99_TARGET_MS} ms; ` +
        `send lag: how late the generator sent, its own delay on this machine; cpu ms per request sent: the ` +
        `server process's own, and the rest of the machine's busy time but the generator's (PostgreSQL, Redis, ` +
        `Kafka and anything else running)`
    )
    for (const [kind, hits] of result.cacheHits) {
      if (hits.total > 0) human(`${kind}: Cache-Status ${ratio(hits)} of 2xx answers`)
    }
    if (hotCheck !== undefined) human(`get-hot ids before the run, a sample after one read each: ${ratio(hotCheck)}`)
    if (result.coldWraps > 0) {
      human(`get-cold ran out of unread ids ${result.coldWraps} time(s) and read them again (--cold-ids for more)`)
    }
    if (result.stoppedEarly) human("the ramp stopped early: two steps in a row failed while running")
    if (Option.isSome(options.ramp)) {
      const k = knee(result.steps)
      human(
        k === undefined
          ? `knee: none of the steps held P99 < ${P99_TARGET_MS} ms`
          : `knee: ${count(k)} req/s, the highest rate whose P99 over all due requests stayed under ${P99_TARGET_MS} ms`
      )
    }
    human(`load average after the run ${loadavg().slice(0, 2).map((n) => n.toFixed(2)).join(", ")} (1, 5 min)`)
    if (options.json) { for (const s of result.steps) console.log(JSON.stringify(stepJson(s))) }
  }))
