/**
 * The bench's command line: `node packages/bench/src/main.ts <command>`, which
 * the root package's scripts run (`pnpm bench`, `pnpm bench:events`,
 * `pnpm bench:scale`, `pnpm bench:seed`, `pnpm soak`; `pnpm bench load` is
 * `bench`'s subcommand). `--help` on any command
 * lists its options.
 *
 * Options that the scripts took from the environment still do: each such flag
 * falls back to its variable (BENCH_DURATION, BENCH_CONNECTIONS, …), so
 * `BENCH_DURATION=5 pnpm bench` and `pnpm bench --duration 5` are the same run.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Config, Console, Effect, Option } from "effect"
import { CliError, Command, Flag } from "effect/cli"
import { DEFAULT_REDIS_URL, runBench, SCENARIO_KEYS } from "./Bench.ts"
import { BenchError, errorText } from "./BenchError.ts"
import { runBenchSoak } from "./BenchSoak.ts"
import { runBulkBench } from "./BulkBench.ts"
import { DEFAULT_CHAOS_MIX, runChaos } from "./Chaos.ts"
import { FAULT_NAMES, parseFaults } from "./ChaosFaults.ts"
import { runEventsBench } from "./EventsBench.ts"
import { runFeedBench } from "./FeedBench.ts"
import { runLoad } from "./Load.ts"
import { DEFAULT_MIX, parseMix } from "./LoadMix.ts"
import { runReplicasBench } from "./ReplicasBench.ts"
import { runScale, SCALE_SCENARIO_KEYS } from "./Scale.ts"
import { parsePartitionPoint, parseSpan } from "./ScaleLoad.ts"
import { describeSeed, parseCount, seed } from "./Seed.ts"
import { runSoak } from "./Soak.ts"
import { parseDuration } from "./SoakReport.ts"

/** A positive integer flag (`1000000`, `1_000_000` or `1e6`), read from `variable` when not given. */
const count = (name: string, options: { readonly description: string; readonly variable?: string }) => {
  const flag = Flag.String(name).pipe(Flag.withDescription(options.description), Flag.withMetavar("N"))
  const given = options.variable === undefined
    ? flag
    : flag.pipe(Flag.withFallbackConfig(Config.String(options.variable)))
  return given.pipe(Flag.mapTryCatch((text) => parseCount(`--${name}`, text), errorText))
}

const duration = count("duration", {
  description: "Seconds per scenario (default 10)",
  variable: "BENCH_DURATION"
}).pipe(Flag.withDefault(10))
const connections = count("connections", {
  description: "Concurrent connections of the load generator (default 50)",
  variable: "BENCH_CONNECTIONS"
}).pipe(Flag.withDefault(50))

/** `--only a,b,…`: a subset of a benchmark's scenarios, all of them by default. */
const only = <K extends string>(keys: ReadonlyArray<K>) =>
  Flag.String("only").pipe(
    Flag.withMetavar("a,b,…"),
    Flag.withDescription(`Comma-separated scenarios (default all): ${keys.join(", ")}`),
    Flag.mapTryCatch((text): ReadonlySet<K> => {
      const given = text.split(",").map((s) => s.trim()).filter((s) => s !== "")
      const unknown = given.filter((k) => !(keys as ReadonlyArray<string>).includes(k))
      if (given.length === 0 || unknown.length > 0) {
        throw new Error(`--only takes a comma-separated list of ${keys.join(", ")}; got ${text}`)
      }
      return new Set(given as Array<K>)
    }, errorText),
    Flag.withDefault<ReadonlySet<K>>(new Set(keys))
  )

/** Failures get one line after the command's name, and exit code 1. */
const reported = (name: string) => <A>(effect: Effect.Effect<A, BenchError>) =>
  effect.pipe(Effect.tapError((e) => Console.error(`${name}: ${e.message}`)))

const events = Command.make(
  "events",
  { duration, connections },
  (options) => runEventsBench(options).pipe(reported("bench:events"))
).pipe(
  Command.withDescription(
    "Publish throughput into a Kafka broker of its own under POST /data load, and the delivery lag."
  )
)

const feed = Command.make(
  "feed",
  {
    rows: count("rows", { description: "Records written, then read back from earliest (default 100000)" }).pipe(
      Flag.withDefault(100_000)
    ),
    rate: count("rate", { description: "POST /data a second while a stream tails the feed (default 500)" }).pipe(
      Flag.withDefault(500)
    ),
    duration: count("duration", { description: "Seconds of that steady load (default 20)" }).pipe(
      Flag.withDefault(20)
    ),
    streams: count("streams", { description: "Idle event streams opened to measure memory (default 1000)" }).pipe(
      Flag.withDefault(1000)
    )
  },
  (options) => runFeedBench(options).pipe(reported("bench:feed"))
).pipe(
  Command.withDescription(
    "The change feed on a throwaway PostgreSQL database: catch-up records/s from earliest, commit-to-event latency under a steady write rate, memory of idle event streams. About a minute."
  )
)

const bulk = Command.make(
  "bulk",
  {
    rows: count("rows", { description: "Records of each NDJSON body, about 300 bytes a line (default 200000)" }).pipe(
      Flag.withDefault(200_000)
    ),
    duration: count("duration", { description: "Seconds of pgbench and of single POSTs (default 10)" }).pipe(
      Flag.withDefault(10)
    ),
    exportRows: count("export-rows", {
      description:
        "Records written straight into the database for one more export, its memory watched (default 0: none)"
    }).pipe(Flag.withDefault(0))
  },
  (options) => runBulkBench(options).pipe(reported("bench:bulk"))
).pipe(
  Command.withDescription(
    "NDJSON bulk ingest and export on a throwaway PostgreSQL database, against pgbench writing the same rows in 1,000-row transactions and single POST /data, in the same run. About a minute."
  )
)

const replicas = Command.make(
  "replicas",
  {
    rows: count("rows", { description: "Records loaded into the primary (default 200000)" }).pipe(
      Flag.withDefault(200_000)
    ),
    rounds: count("rounds", { description: "Rounds of A then B, each a server of its own (default 2)" }).pipe(
      Flag.withDefault(2)
    ),
    duration: count("duration", { description: "Seconds per scenario, after a 1 s warm-up (default 10)" }).pipe(
      Flag.withDefault(10)
    ),
    connections: count("connections", { description: "Concurrent connections of autocannon (default 32)" }).pipe(
      Flag.withDefault(32)
    )
  },
  (options) => runReplicasBench(options).pipe(reported("bench replicas"))
).pipe(
  Command.withDescription(
    "Reads by id and full list pages against a PostgreSQL primary of its own alone (A) and with a streaming " +
      "replica (B, DATABASE_READ_URL), no cache, A and B alternating: req/s, P99, CPU per request of the server, " +
      "the primary and the replica, and the share of reads the replica served. About 2 min here with the defaults (1.9 min measured on this 2-core machine: " +
      "setup and the load of 200,000 rows about 15 s, then 8 runs of 11 s and a server start per configuration)."
  )
)

/** A comma-separated list of `parse`d items, or `none` for an empty one. */
const list = <A>(name: string, parse: (text: string) => A) => (text: string): ReadonlyArray<A> =>
  text.trim() === "none" ? [] : text.split(",").map((item) => {
    try {
      return parse(item.trim())
    } catch (e) {
      throw new Error(`--${name}: ${errorText(e)}`, { cause: e })
    }
  })

const scale = Command.make("scale", {
  rows: Flag.String("rows").pipe(
    Flag.withMetavar("N,N,…|none"),
    Flag.withDescription(
      "The row series: one database grown to each count in turn (default 1e6,1e7). Time per point on this " +
        "2-core machine with 10 s scenarios, measured: 1e6 about 2 to 2.5 min (load and VACUUM 15-23 s), 1e7 about " +
        "6 min (9M more rows: 3.6 min); 1e8 estimated at 40 min or more (9e7 more rows at the 45k rows/s " +
        "of 1e7, slower once the table outgrows RAM) and 90 GiB of disk. A partition point (1e6 rows) about " +
        "2.5 min; the default run about 17 min"
    ),
    Flag.withDefault("1e6,1e7"),
    Flag.mapTryCatch(list("rows", (text) => parseCount("a row count", text)), errorText)
  ),
  interval: Flag.String("interval").pipe(
    Flag.withMetavar("month|week|day[:N]"),
    Flag.withDescription(
      "Partitions of the row series: N of the interval, the newest the current one (default month:15)"
    ),
    Flag.withDefault("month:15"),
    Flag.mapTryCatch(parseSpan, errorText)
  ),
  partitions: Flag.String("partitions").pipe(
    Flag.withMetavar("N,N,…|none"),
    Flag.withDescription(
      "The partition series, a database each: N months up to 36, N days above, or interval:N (default 15,366,1000)"
    ),
    Flag.withDefault("15,366,1000"),
    Flag.mapTryCatch(list("partitions", parsePartitionPoint), errorText)
  ),
  partitionRows: count("partition-rows", { description: "Rows of each partition-series database (default 1e6)" })
    .pipe(Flag.withDefault(1_000_000)),
  duration,
  connections,
  only: only(SCALE_SCENARIO_KEYS),
  serverMain: Flag.String("server-main").pipe(
    Flag.withMetavar("PATH"),
    Flag.withDescription(
      "packages/server/src/main.ts of another checkout, to measure that server (default this one's)"
    ),
    Flag.optional
  ),
  json: Flag.String("json").pipe(
    Flag.withMetavar("FILE"),
    Flag.withDescription("Also write the results as JSON (after each point)"),
    Flag.optional
  ),
  dir: Flag.String("dir").pipe(
    Flag.withMetavar("DIR"),
    Flag.withDescription("Where the cluster's directory is made (default /var/tmp)"),
    Flag.withDefault("/var/tmp")
  ),
  reuse: Flag.String("reuse").pipe(
    Flag.withMetavar("DIR"),
    Flag.withDescription("A cluster directory kept by --keep: its loaded rows are used again (and it is kept again)"),
    Flag.optional
  ),
  keep: Flag.Boolean("keep").pipe(
    Flag.withDescription("Keep the cluster's directory (stopped) for --reuse, instead of deleting it"),
    Flag.withDefault(false)
  ),
  port: count("port", { description: "The cluster's port on 127.0.0.1 (default 55432)" }).pipe(Flag.withDefault(55432)),
  sharedBuffers: Flag.String("shared-buffers").pipe(
    Flag.withMetavar("SIZE"),
    Flag.withDescription("shared_buffers of the cluster (default 2GB: far below the data at 1e8 rows)"),
    Flag.withDefault("2GB")
  ),
  effectiveCacheSize: Flag.String("effective-cache-size").pipe(
    Flag.withMetavar("SIZE"),
    Flag.withDescription("effective_cache_size of the cluster (default 6GB, as on an 8 GB database host)"),
    Flag.withDefault("6GB")
  )
}, (options) => runScale(options).pipe(reported("bench:scale"))).pipe(
  Command.withDescription(
    "Read and write throughput as records grows in rows and in partitions, on a PostgreSQL cluster of its own."
  )
)

/** The open-loop generator's flags, shared by `bench load` and `bench soak`. */
const generatorFlags = {
  mix: Flag.String("mix").pipe(
    Flag.withMetavar("kind=weight,…"),
    Flag.withDescription(
      `Request kinds and their weights: get-hot, get-cold, range, post, batch (default ${DEFAULT_MIX})`
    ),
    Flag.withDefault(DEFAULT_MIX),
    Flag.mapTryCatch(parseMix, errorText)
  ),
  connections: count("connections", { description: "Connections of the generator, no pipelining (default 100)" })
    .pipe(Flag.withDefault(100)),
  maxInFlight: count("max-in-flight", {
    description: "Safety cap on requests in flight; one due beyond it is not sent and counts as dropped (default 10000)"
  }).pipe(Flag.withDefault(10_000)),
  timeout: count("timeout", { description: "Seconds before an unanswered request counts as a timeout (default 10)" })
    .pipe(Flag.withDefault(10)),
  redisUrl: Flag.String("redis-url").pipe(
    Flag.withMetavar("URL"),
    Flag.withDescription(
      `Redis for its server's record cache, \`off\` for the in-process one (default ${DEFAULT_REDIS_URL})`
    ),
    Flag.withFallbackConfig(Config.String("BENCH_REDIS_URL").pipe(Config.orElse(() => Config.String("REDIS_URL")))),
    Flag.withDefault(DEFAULT_REDIS_URL)
  ),
  hotIds: count("hot-ids", { description: "Records written and read once in setup, for get-hot (default 10000)" })
    .pipe(Flag.withDefault(10_000)),
  coldIds: count("cold-ids", {
    description: "Records made in setup for get-cold, each read at most once (default: as many as the run reads)"
  }).pipe(Flag.optional)
}

const load = Command.make("load", {
  rate: count("rate", { description: "Requests per second, constant, for --duration seconds" }).pipe(Flag.optional),
  duration: count("duration", { description: "Seconds at --rate (default 30)" }).pipe(Flag.withDefault(30)),
  ramp: Flag.String("ramp").pipe(
    Flag.withMetavar("FROM:TO:STEP"),
    Flag.withDescription(
      "Rates from FROM to TO by STEP requests/s, --step-duration each; says per step whether P99 < 500 ms held, " +
        "and the knee (the highest rate that held)"
    ),
    Flag.optional
  ),
  stepDuration: count("step-duration", { description: "Seconds per ramp step (default 20)" }).pipe(
    Flag.withDefault(20)
  ),
  ...generatorFlags,
  url: Flag.String("url").pipe(
    Flag.withMetavar("URL"),
    Flag.withDescription("A running Strata server to load, with --key (default: a server of its own)"),
    Flag.optional
  ),
  key: Flag.String("key").pipe(
    Flag.withMetavar("KEY"),
    Flag.withDescription("The API key for --url (records:read and records:write)"),
    Flag.optional
  ),
  kafka: Flag.Boolean("kafka").pipe(
    Flag.withDescription("Start a Kafka broker of its own (scripts/kafka) and give its server KAFKA_BROKERS"),
    Flag.withDefault(false)
  ),
  json: Flag.Boolean("json").pipe(
    Flag.withDescription("Print one JSON line per step on stdout at the end (the rest goes to stderr)"),
    Flag.withDefault(false)
  )
}, (options) => runLoad(options).pipe(reported("bench load"))).pipe(
  Command.withDescription(
    "Open-loop load: requests on a fixed schedule, latency from each one's intended send time; a ramp finds the knee."
  )
)

const benchSoak = Command.make("soak", {
  rate: count("rate", {
    description: "Requests per second, constant (default 1400: 70 % of the 2,000 req/s knee here)"
  })
    .pipe(Flag.withDefault(1_400)),
  duration: Flag.String("duration").pipe(
    Flag.withMetavar("1h|20m|90s|S"),
    Flag.withDescription("How long: 1h, 20m, 90s, 1h30m or seconds (default 1h)"),
    Flag.withDefault("1h"),
    Flag.mapTryCatch(parseDuration, errorText)
  ),
  ...generatorFlags,
  kafka: Flag.Boolean("kafka").pipe(
    Flag.withDescription("A Kafka broker of its own for the server (default on; --no-kafka: outbox only)"),
    Flag.withDefault(true)
  ),
  out: Flag.String("out").pipe(
    Flag.withMetavar("DIR"),
    Flag.withDescription("Where minutes.jsonl and soak.svg go (default a new directory under /tmp)"),
    Flag.optional
  )
}, (options) => runBenchSoak(options).pipe(reported("bench soak"))).pipe(
  Command.withDescription(
    "The open-loop mix at a constant rate for a long time (default 1,400 req/s for 1h) with PostgreSQL, Redis and " +
      "Kafka: per minute P99, heap, outbox and table sizes; checks P99, heap flatness, outbox drain and errors."
  )
)

const chaos = Command.make("chaos", {
  faults: Flag.String("faults").pipe(
    Flag.withMetavar("a,b,…"),
    Flag.withDescription(`Faults in order (default all): ${FAULT_NAMES.join(", ")}`),
    Flag.withDefault(FAULT_NAMES.join(",")),
    Flag.mapTryCatch(parseFaults, errorText)
  ),
  rate: count("rate", { description: "Requests per second, constant, all along (default 200)" }).pipe(
    Flag.withDefault(200)
  ),
  settle: count("settle", { description: "Seconds of steady load before each fault (default 10)" }).pipe(
    Flag.withDefault(10)
  ),
  hold: count("hold", { description: "Seconds each fault is held (default 15)" }).pipe(Flag.withDefault(15)),
  recover: count("recover", {
    description: "Seconds after healing within which a fault must be over (default 30)"
  }).pipe(Flag.withDefault(30)),
  mix: Flag.String("mix").pipe(
    Flag.withMetavar("kind=weight,…"),
    Flag.withDescription(`Request kinds and their weights: get-hot, range, post, batch (default ${DEFAULT_CHAOS_MIX})`),
    Flag.withDefault(DEFAULT_CHAOS_MIX),
    Flag.mapTryCatch(parseMix, errorText)
  ),
  connections: count("connections", {
    description:
      "Connections of the generator to each server, no pipelining (default 1000, the servers' MAX_IN_FLIGHT: " +
      "the generator never queues a request a server would take)"
  }).pipe(Flag.withDefault(1_000)),
  timeout: count("timeout", { description: "Seconds before an unanswered request counts as a timeout (default 30)" })
    .pipe(Flag.withDefault(30)),
  hotIds: count("hot-ids", { description: "Records written and read once in setup, for get-hot (default 1000)" })
    .pipe(Flag.withDefault(1_000)),
  kafkaBrokers: Flag.String("kafka-brokers").pipe(
    Flag.withMetavar("HOST:PORT"),
    Flag.withDescription(
      "A running broker to publish to (a topic of the run's own; never harmed, so no kafka-* faults); " +
        "default a broker of its own"
    ),
    Flag.optional
  )
}, (options) => runChaos(options).pipe(reported("bench chaos"))).pipe(
  Command.withDescription(
    "Faults under open-loop load (PostgreSQL, Redis, Kafka, a Strata process), each injected, held and healed, on a " +
      "rig of its own; then every acknowledged write is checked. Prints a table; exit code 1 when a check fails."
  )
)

const bench = Command.make("bench", {
  rows: count("rows", { description: "Seed this many synthetic rows before measuring" }).pipe(Flag.optional),
  only: only(SCENARIO_KEYS),
  duration,
  connections,
  databaseUrl: Flag.String("database-url").pipe(
    Flag.withMetavar("URL"),
    Flag.withDescription("An existing database to use and keep (default: a throwaway one on the local PostgreSQL)"),
    Flag.withFallbackConfig(Config.String("BENCH_DATABASE_URL")),
    Flag.optional
  ),
  redisUrl: Flag.String("redis-url").pipe(
    Flag.withMetavar("URL"),
    Flag.withDescription(`Redis for the record cache, \`off\` for the in-process one (default ${DEFAULT_REDIS_URL})`),
    Flag.withFallbackConfig(Config.String("BENCH_REDIS_URL").pipe(Config.orElse(() => Config.String("REDIS_URL")))),
    Flag.withDefault(DEFAULT_REDIS_URL)
  )
}, (options) => runBench(options).pipe(reported("bench"))).pipe(
  Command.withDescription("Measures the HTTP API under load on this machine."),
  Command.withSubcommands([bulk, events, feed, load, benchSoak, chaos, replicas, scale])
)

const seedCommand = Command.make("seed", {
  rows: count("rows", { description: "How many records to load" }),
  databaseUrl: Flag.String("database-url").pipe(
    Flag.withMetavar("URL"),
    Flag.withDescription("The database, already migrated (default DATABASE_URL)"),
    Flag.withFallbackConfig(Config.String("DATABASE_URL"))
  ),
  jobs: count("jobs", { description: "Parallel COPY streams (default min(4, cores))" }).pipe(Flag.optional)
}, ({ databaseUrl, jobs, rows }) =>
  Effect.tryPromise({
    try: () => seed({ databaseUrl, rows, ...Option.match(jobs, { onNone: () => ({}), onSome: (jobs) => ({ jobs }) }) }),
    catch: (e) => new BenchError({ message: errorText(e) })
  }).pipe(
    Effect.flatMap((result) => Console.log(describeSeed(result))),
    reported("seed")
  )).pipe(Command.withDescription("Bulk-loads synthetic records with COPY, to measure reads on a large table."))

const soak = Command.make("soak", {
  records: count("records", { description: "Records to write (default 100,000)" }).pipe(Flag.withDefault(100_000)),
  batch: count("batch", { description: "Records per POST /data/batch (default 10)", variable: "SOAK_BATCH" }).pipe(
    Flag.withDefault(10)
  ),
  connections: count("connections", { description: "Concurrent writers (default 8)", variable: "SOAK_CONNECTIONS" })
    .pipe(Flag.withDefault(8))
}, (options) => runSoak(options).pipe(reported("soak"))).pipe(
  Command.withDescription("The embedded default under many writes: the heap must stay flat.")
)

const cli = Command.make("strata-bench").pipe(
  Command.withDescription("Benchmarks, the soak run and the seeder for Strata."),
  Command.withSubcommands([bench, seedCommand, soak])
)

Command.run(cli, { version: "0.1.0" }).pipe(
  // Parse errors were shown with the usage, ours by `reported`: only the exit code is left.
  Effect.catch((error) =>
    Effect.andThen(
      CliError.isCliError(error) || error instanceof BenchError
        ? Effect.void
        : Console.error(`strata-bench: ${errorText(error)}`),
      Effect.sync(() => {
        process.exitCode = 1
      })
    )
  ),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)
