/**
 * `bench soak`: the open-loop mix of `bench load` at one constant rate
 * (`--rate`, default 1,400 req/s: 70 % of the 2,000 req/s knee measured on this
 * machine) for a long time (`--duration`, default 1h), against a server of its
 * own with PostgreSQL, Redis and (unless `--no-kafka`) a Kafka broker of its own.
 *
 * Every minute: P99 and P99.9 of the requests due that minute (a histogram per
 * minute, latency from the intended send time), its requests and errors, the
 * server's heap and RSS, outbox size and oldest event's age, the mean Kafka
 * delivery lag of the minute (from the server's histogram), and the size of
 * `records` (its partitions, indexes included) and `outbox` in PostgreSQL. A line
 * per minute as it goes; at the end the targets, PASS or FAIL each (SoakReport.ts),
 * and `minutes.jsonl` and `soak.svg` in `--out`.
 */
import { Effect, Option } from "effect"
import { closeSync, mkdirSync, mkdtempSync, openSync, writeFileSync } from "node:fs"
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from "node:os"
import { join } from "node:path"
import { attempt, BenchError } from "./BenchError.ts"
import { cpuPerRequest, readCpu } from "./CpuUsage.ts"
import { failureOf, makeSender, ownServer, writeRecords } from "./Load.ts"
import { describeMix, kindAt, type Mix, requestMaker } from "./LoadMix.ts"
import { metricValue } from "./LoadReport.ts"
import { runSchedule, systemClock } from "./LoadSchedule.ts"
import { type Auth, count, formatTable, readAll, sample } from "./Measure.ts"
import { psql } from "./Postgres.ts"
import { describeSeed, seed } from "./Seed.ts"
import {
  checkLine,
  drainCheck,
  errorsCheck,
  heapCheck,
  MINUTE_TABLE_HEADER,
  minuteAt,
  minuteLine,
  type MinuteRecord,
  minuteRecord,
  minuteRow,
  minutesOf,
  MinuteStats,
  p99Check,
  type ServerSample,
  soakSvg
} from "./SoakReport.ts"

/** How long the outbox gets to empty after the load stops. */
const DRAIN_LIMIT_S = 60

export interface SoakOptions {
  readonly rate: number
  readonly duration: number
  readonly mix: Mix
  readonly connections: number
  readonly maxInFlight: number
  readonly timeout: number
  readonly redisUrl: string
  readonly kafka: boolean
  readonly hotIds: number
  readonly coldIds: Option.Option<number>
  readonly out: Option.Option<string>
}

const progress = (message: string) => console.error(`bench soak: ${message}`)

const SIZES_SQL = `SELECT
  (SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits WHERE inhparent = 'records'::regclass)
    + pg_total_relation_size('records'),
  pg_total_relation_size('outbox'),
  (SELECT count(*) FROM outbox)`

interface Counters {
  lagSum: number | undefined
  lagCount: number | undefined
}

/** The server's /metrics and PostgreSQL's sizes now; the Kafka lag over the events since the last sample. */
const sampleServer = async (base: string, databaseUrl: string, last: Counters): Promise<ServerSample> => {
  const text = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(10_000) }).then((r) => r.text()).catch(
    () => ""
  )
  const value = (name: string, labels?: string) => metricValue(text, name, labels) ?? null
  const sizes = await psql(databaseUrl, SIZES_SQL).then((s) => s.split("|").map(Number)).catch(() => [])
  const lagSum = metricValue(text, "strata_event_delivery_lag_seconds_sum")
  const lagCount = metricValue(text, "strata_event_delivery_lag_seconds_count")
  let lag: number | null = null
  if (lagSum !== undefined && lagCount !== undefined) {
    const dCount = lagCount - (last.lagCount ?? 0)
    const dSum = lagSum - (last.lagSum ?? 0)
    lag = dCount > 0 ? (1000 * dSum) / dCount : null
    last.lagSum = lagSum
    last.lagCount = lagCount
  }
  return {
    heapUsedBytes: value("nodejs_heap_used_bytes"),
    liveHeapBytes: value("nodejs_heap_live_bytes"),
    rssBytes: value("process_resident_memory_bytes"),
    outboxEvents: value("strata_outbox_events"),
    outboxOldestAgeS: value("strata_outbox_oldest_event_age_seconds"),
    kafkaDeliveryLagMs: lag,
    recordsBytes: sizes.length === 3 ? sizes[0] : null,
    outboxBytes: sizes.length === 3 ? sizes[1] : null
  }
}

const outboxRows = (databaseUrl: string): Promise<number | null> =>
  psql(databaseUrl, "SELECT count(*) FROM outbox").then(Number, () => null)

export const runBenchSoak = (options: SoakOptions): Effect.Effect<void, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const outDir = Option.match(options.out, {
      onNone: () => mkdtempSync(join(tmpdir(), "strata-soak-")),
      onSome: (dir) => {
        mkdirSync(dir, { recursive: true })
        return dir
      }
    })
    const load = [loadavg()[0], loadavg()[1]]
    // The server logs as a user's does by default (an access line per request), into a file beside the data.
    const logFd = yield* Effect.acquireRelease(
      Effect.sync(() => openSync(join(outDir, "server.log"), "a")),
      (fd) => Effect.sync(() => closeSync(fd))
    )
    const target = yield* ownServer(options, progress, logFd)
    const { auth, base } = target
    const databaseUrl = target.databaseUrl!

    const hotShare = options.mix.find((m) => m.kind === "get-hot")?.share ?? 0
    const coldShare = options.mix.find((m) => m.kind === "get-cold")?.share ?? 0
    const due = Math.round(options.rate * options.duration)
    const coldIds = coldShare === 0
      ? 0
      : Option.getOrElse(options.coldIds, () => Math.min(300_000, Math.max(1_000, Math.ceil(due * coldShare * 1.05))))
    let hot: Array<string> = []
    if (hotShare > 0) {
      progress(`writing ${count(options.hotIds)} records through the API for get-hot, then reading each once`)
      hot = yield* attempt((signal) => writeRecords(base, auth, options.hotIds, signal))
      yield* attempt((signal) => readAll(base, auth, hot, signal))
    }
    let cold: ReadonlyArray<string> = []
    if (coldIds > 0) {
      progress(`loading ${count(coldIds)} records with COPY for get-cold (never read, so in no cache)`)
      const seeded = yield* attempt(() => seed({ databaseUrl, rows: coldIds, sampleIds: coldIds }))
      progress(describeSeed(seeded))
      cold = sample(seeded.sampleIds, seeded.sampleIds.length)
    }

    const say = (line: string) => console.log(line)
    for (
      const line of [
        `machine: ${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? "unknown cpu"}), ` +
        `${Math.round(totalmem() / 2 ** 30)} GiB RAM, node ${process.version}; load average before setup ${
          load.map((n) => n.toFixed(2)).join(", ")
        } (1, 5 min)`,
        ...target.description,
        `soak: ${count(options.rate)} req/s for ${options.duration} s (${count(due)} requests), open loop; mix ${
          describeMix(options.mix)
        }; ${count(hot.length)} get-hot ids, ${count(cold.length)} get-cold ids`,
        `generator: undici Pool, ${options.connections} connections, at most ${
          count(options.maxInFlight)
        } in flight, ${options.timeout} s timeout; output in ${outDir}`
      ]
    ) say(line)

    const minutes = minutesOf(options.duration)
    const stats = minutes.map((seconds, i) => new MinuteStats(i, seconds))
    const records = yield* attempt((signal) =>
      drive(options, base, auth, databaseUrl, hot, cold, stats, say, target.serverPid, signal)
    )

    // The outbox after the load: up to DRAIN_LIMIT_S for it to empty.
    const drainStart = performance.now()
    let left = yield* Effect.promise(() => outboxRows(databaseUrl))
    while (left !== 0 && performance.now() - drainStart < DRAIN_LIMIT_S * 1000) {
      yield* Effect.sleep("1 second")
      left = yield* Effect.promise(() => outboxRows(databaseUrl))
    }
    const drained = drainCheck(left, (performance.now() - drainStart) / 1000, DRAIN_LIMIT_S)

    const jsonl = join(outDir, "minutes.jsonl")
    const svg = join(outDir, "soak.svg")
    writeFileSync(jsonl, records.map((r) => JSON.stringify(r)).join("\n") + "\n")
    writeFileSync(
      svg,
      soakSvg(
        records,
        `bench soak: ${count(options.rate)} req/s for ${options.duration} s${options.kafka ? ", Kafka on" : ""}, ${
          new Date().toISOString().slice(0, 10)
        }`
      )
    )
    say("")
    say(formatTable(MINUTE_TABLE_HEADER, records.map(minuteRow), [0, 1, 2]))
    say(
      "p99: over every request due that minute, those without a 2xx counted as slowest; p99.9 over 2xx answers; " +
        "heap, rss, outbox at the end of the minute; lag: mean event delivery lag of the minute (commit to the bus's ack: Kafka's with Kafka on); sizes: tables and indexes"
    )
    const checks = [p99Check(records), heapCheck(records, options.duration), drained, errorsCheck(records)]
    for (const c of checks) say(checkLine(c))
    say(
      `${checks.every((c) => c.pass) ? "PASS" : "FAIL"}: ${
        checks.filter((c) => c.pass).length
      }/${checks.length} targets met`
    )
    say(`load average after the run ${loadavg().slice(0, 2).map((n) => n.toFixed(2)).join(", ")} (1, 5 min)`)
    say(`per-minute data: ${jsonl}`)
    say(`chart: ${svg}`)
    if (!checks.every((c) => c.pass)) process.exitCode = 1
  }))

/** Sends the schedule; closes each minute (server sampled at its end, line printed once its answers are in). */
const drive = async (
  options: SoakOptions,
  base: string,
  auth: Auth,
  databaseUrl: string,
  hot: ReadonlyArray<string>,
  cold: ReadonlyArray<string>,
  stats: ReadonlyArray<MinuteStats>,
  say: (line: string) => void,
  serverPid: (() => number | undefined) | undefined,
  signal: AbortSignal
): Promise<ReadonlyArray<MinuteRecord>> => {
  const sender = makeSender(base, auth, options)
  const maker = requestMaker(hot, cold)
  const clock = systemClock
  let inFlight = 0
  const fire = async (m: MinuteStats, intended: number) => {
    const request = maker.make(kindAt(options.mix, Math.random()))
    try {
      const res = await sender.send(request)
      m.recordAnswer(res.statusCode, clock.now() - intended)
    } catch (e) {
      m.recordFailure(failureOf(e))
    } finally {
      inFlight--
    }
  }

  const counters = { lagSum: undefined, lagCount: undefined }
  // The counters before the load, so the first minute's Kafka lag is its own.
  await sampleServer(base, databaseUrl, counters)
  let cpu = readCpu(serverPid?.())
  const start = clock.now()
  const records: Array<MinuteRecord> = []
  /** Samples at the end of each minute, then waits for that minute's answers and prints it. */
  const closer = (async () => {
    let endS = 0
    for (const m of stats) {
      endS += m.seconds
      const at = start + endS * 1000
      while (clock.now() < at && !signal.aborted) await clock.wait(Math.min(1_000, at - clock.now()))
      if (signal.aborted) return
      const s = await sampleServer(base, databaseUrl, counters)
      const cpuNow = readCpu(serverPid?.())
      const perRequest = cpuPerRequest(cpu, cpuNow, m.due)
      cpu = cpuNow
      const deadline = clock.now() + options.timeout * 1000 + 5_000
      while (m.inFlight > 0 && clock.now() < deadline && !signal.aborted) await clock.wait(50)
      const r = minuteRecord(m, endS, s, loadavg()[0], perRequest)
      records.push(r)
      say(minuteLine(r))
    }
  })()
  let first: number | undefined
  try {
    await runSchedule({
      steps: [{ rate: options.rate, seconds: options.duration }],
      clock,
      signal,
      send: (_k, _index, intended) => {
        // Minutes count from the first request's due time: the schedule's own start, a little after `start`.
        first ??= intended
        const m = stats[minuteAt(intended - first, stats.length)]
        if (inFlight >= options.maxInFlight) return m.recordDropped()
        m.recordSent(clock.now() - intended)
        inFlight++
        void fire(m, intended)
      }
    })
    await closer
    return records
  } finally {
    await sender.close()
  }
}
