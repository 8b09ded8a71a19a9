/**
 * The bench's command line: `node packages/bench/src/main.ts <command>`, which
 * the root package's scripts run (`pnpm bench`, `pnpm bench:events`,
 * `pnpm bench:seed`, `pnpm soak`). `--help` on any command lists its options.
 *
 * Options that the scripts took from the environment still do: each such flag
 * falls back to its variable (BENCH_DURATION, BENCH_CONNECTIONS, …), so
 * `BENCH_DURATION=5 pnpm bench` and `pnpm bench --duration 5` are the same run.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Config, Console, Effect, Option } from "effect"
import { CliError, Command, Flag } from "effect/cli"
import { DEFAULT_REDIS_URL, parseOnly, runBench, SCENARIO_KEYS } from "./Bench.ts"
import { BenchError, errorText } from "./BenchError.ts"
import { runEventsBench } from "./EventsBench.ts"
import { describeSeed, parseCount, seed } from "./Seed.ts"
import { runSoak } from "./Soak.ts"

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

const bench = Command.make("bench", {
  rows: count("rows", { description: "Seed this many synthetic rows before measuring" }).pipe(Flag.optional),
  only: Flag.String("only").pipe(
    Flag.withMetavar("a,b,…"),
    Flag.withDescription(`Comma-separated scenarios (default all): ${SCENARIO_KEYS.join(", ")}`),
    Flag.mapTryCatch(parseOnly, errorText),
    Flag.withDefault(new Set(SCENARIO_KEYS))
  ),
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
  Command.withSubcommands([events])
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
