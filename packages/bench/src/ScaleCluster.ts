/**
 * The scale benchmark's own PostgreSQL 15 cluster: a directory (under --dir,
 * default /var/tmp), initdb with trust authentication for user `postgres`, our
 * settings in `strata-scale.conf` (included from postgresql.conf), pg_ctl on
 * 127.0.0.1:--port with the unix socket inside the data directory. The
 * binaries refuse to run as root, so as root they run as `postgres` (runuser)
 * and the directory is that user's.
 *
 * Scoped: when the run ends, fails or is interrupted the cluster stops and the
 * directory is deleted, unless --keep. A directory kept so can be named by
 * --reuse in a later run: its databases and what was loaded into them (the
 * state file beside the data directory) are used again, and it is kept again.
 */
import { Effect, type Scope } from "effect"
import { execFile, execFileSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { join } from "node:path"
import { attempt, BenchError, reportCleanupFailure } from "./BenchError.ts"
import { psql } from "./Postgres.ts"
import type { DatabaseState } from "./ScaleLoad.ts"

const PG_BIN = "/usr/lib/postgresql/15/bin"
const STATE_FILE = "strata-scale.json"
const CONF_FILE = "strata-scale.conf"
/**
 * Disk a row takes, the table and its 3 indexes (measured: 789 bytes a row at
 * 1e6 rows, 821 at 1e7), with a margin; and the WAL, which grows to
 * max_wal_size between checkpoints. For the check before loading. On a
 * filesystem that compresses (btrfs with zstd, docs/SIZING.md) statfs counts
 * what is stored, not the rows: BENCH_BYTES_PER_ROW says what a row takes there.
 */
const BYTES_PER_ROW = Number(process.env.BENCH_BYTES_PER_ROW ?? 900)
const WAL_BYTES = 9 * 2 ** 30

/** What the kept directory remembers between runs: each database's load. */
export interface ClusterState {
  readonly version: 1
  readonly databases: Record<string, DatabaseState>
}

export interface ClusterOptions {
  /** Where a new cluster's directory is made. */
  readonly parent: string
  /** A directory kept by an earlier --keep run, used (and kept) instead of a new one. */
  readonly reuse: string | undefined
  readonly keep: boolean
  readonly port: number
  readonly sharedBuffers: string
  readonly effectiveCacheSize: string
  /** Rows the run still has to load on this cluster, for the check of free disk. */
  readonly rowsToLoad: (state: ClusterState) => number
  readonly log: (message: string) => void
}

export interface Cluster {
  readonly dir: string
  readonly port: number
  readonly reused: boolean
  /** The settings as the running server reports them (`SHOW`), ours first. */
  readonly settings: ReadonlyArray<readonly [string, string]>
  readonly version: string
  readonly state: ClusterState
  /** Writes `state` next to the data directory, for a later --reuse. */
  readonly save: () => void
  readonly urlOf: (database: string) => string
}

const asRoot = () => process.getuid?.() === 0

/** Runs a PostgreSQL program (as `postgres` when we are root); answers its stdout. */
export const pgProgram = (program: string, args: ReadonlyArray<string>): Effect.Effect<string, BenchError> =>
  Effect.callback<string, BenchError>((resume) => {
    const [file, argv] = asRoot()
      ? ["runuser", ["-u", "postgres", "--", join(PG_BIN, program), ...args]]
      : [join(PG_BIN, program), [...args]]
    execFile(file, argv, (error, stdout, stderr) =>
      resume(
        error === null
          ? Effect.succeed(stdout)
          : Effect.fail(new BenchError({ message: `${program} ${args.join(" ")}: ${stderr.trim() || error.message}` }))
      ))
  })

/** Our settings, one `name = value` a line; everything else is initdb's default. */
const settingsFile = (options: ClusterOptions, dataDir: string): ReadonlyArray<readonly [string, string]> => [
  ["port", String(options.port)],
  ["listen_addresses", "'127.0.0.1'"],
  // Its own socket directory: the machine's cluster may own /var/run/postgresql's.
  ["unix_socket_directories", `'${dataDir}'`],
  ["max_connections", "200"],
  ["shared_buffers", options.sharedBuffers],
  ["effective_cache_size", options.effectiveCacheSize],
  // For VACUUM after each load: its dead-tuple list and index passes.
  ["maintenance_work_mem", "512MB"],
  ["autovacuum", "on"],
  ["max_wal_size", "8GB"],
  ["checkpoint_timeout", "15min"],
  ["wal_compression", "on"],
  ["synchronous_commit", "on"],
  ["shared_preload_libraries", "'pg_stat_statements'"],
  ["pg_stat_statements.track_planning", "on"],
  ["track_io_timing", "on"]
]

const portFree = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const server = createServer()
    server.once("error", () => resolve(false))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
  })

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`

/** Fails, before anything is loaded, when the disk under `dir` cannot take `rows` more rows. */
const checkDisk = (dir: string, rows: number, log: (message: string) => void): Effect.Effect<void, BenchError> =>
  Effect.gen(function*() {
    const fs = statfsSync(dir)
    const free = fs.bavail * fs.bsize
    const bytes = rows === 0 ? 0 : rows * BYTES_PER_ROW + WAL_BYTES
    log(`disk: ${gib(free)} free under ${dir}; ${rows.toLocaleString("en-US")} rows to load need about ${gib(bytes)}`)
    if (bytes > free) {
      return yield* new BenchError({
        message:
          `not enough disk under ${dir}: ${rows.toLocaleString("en-US")} rows to load need about ${
            gib(bytes)
          } (${BYTES_PER_ROW} bytes a row for the table and its 3 indexes, and ${gib(WAL_BYTES)} of WAL), ` +
          `and ${gib(free)} is free. Load fewer rows, or point --dir at a larger disk.`
      })
    }
  })

/** The directory: a new one (deleted at the end unless kept) or the one to reuse; answers it with its state. */
const clusterDirectory = (options: ClusterOptions) =>
  options.reuse !== undefined
    ? Effect.acquireRelease(
      attempt(async () => {
        const dir = options.reuse!
        const file = join(dir, STATE_FILE)
        if (!existsSync(join(dir, "data", "PG_VERSION")) || !existsSync(file)) {
          throw new Error(`--reuse ${dir}: not a directory kept by an earlier \`bench scale --keep\` run`)
        }
        const state = JSON.parse(readFileSync(file, "utf8")) as ClusterState
        return { dir, state, fresh: false }
      }),
      // Someone kept it on purpose (a 1e8 load takes long): never deleted here.
      ({ dir }) => Effect.sync(() => options.log(`kept the reused cluster in ${dir} (stopped)`))
    )
    : Effect.acquireRelease(
      attempt(async () => {
        const dir = mkdtempSync(join(options.parent, "strata-scale-"))
        // initdb runs as postgres, and makes the data directory inside this one.
        if (asRoot()) {
          try {
            execFileSync("chown", ["postgres:", dir], { stdio: ["ignore", "ignore", "pipe"] })
          } catch (e) {
            rmSync(dir, { recursive: true, force: true })
            throw e
          }
        }
        const state: ClusterState = { version: 1, databases: {} }
        return { dir, state, fresh: true }
      }),
      ({ dir }) =>
        options.keep
          ? Effect.sync(() => options.log(`kept the cluster in ${dir} (stopped): pass --reuse ${dir} to use it again`))
          : Effect.sync(() => {
            rmSync(dir, { recursive: true, force: true })
            options.log(`deleted ${dir}`)
          })
    )

/**
 * The cluster, started and ready, with pg_stat_statements loaded; stopped when
 * the scope closes (and its directory deleted, unless kept or reused).
 */
export const scaleCluster = (options: ClusterOptions): Effect.Effect<Cluster, BenchError, Scope.Scope> =>
  Effect.gen(function*() {
    const { log, port } = options
    const { dir, fresh, state } = yield* clusterDirectory(options)
    const dataDir = join(dir, "data")
    yield* checkDisk(dir, options.rowsToLoad(state), log)
    if (!(yield* Effect.promise(() => portFree(port)))) {
      return yield* new BenchError({
        message: `port ${port} is in use on 127.0.0.1 (a cluster left running?): pass --port with a free one`
      })
    }
    if (fresh) {
      log(`initdb ${dataDir}`)
      yield* pgProgram("initdb", ["-D", dataDir, "--auth=trust", "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8"])
      yield* attempt(async () => {
        const conf = join(dataDir, "postgresql.conf")
        writeFileSync(conf, `${readFileSync(conf, "utf8")}\ninclude = '${CONF_FILE}'\n`)
      })
    }
    // Written at every start, so a reused cluster runs with this run's settings.
    const ours = settingsFile(options, dataDir)
    yield* attempt(async () =>
      writeFileSync(
        join(dataDir, CONF_FILE),
        `# bench scale: written at each start\n${ours.map(([name, value]) => `${name} = ${value}`).join("\n")}\n`
      )
    )
    const logFile = join(dir, "postgres.log")
    yield* Effect.acquireRelease(
      pgProgram("pg_ctl", ["-D", dataDir, "-l", logFile, "-w", "-t", "120", "start"]).pipe(
        Effect.mapError((e) => {
          const tail = existsSync(logFile) ? readFileSync(logFile, "utf8").trim().split("\n").slice(-5).join("\n") : ""
          return new BenchError({ message: `${e.message}${tail === "" ? "" : `\n${logFile}:\n${tail}`}` })
        })
      ),
      () =>
        pgProgram("pg_ctl", ["-D", dataDir, "-m", "fast", "-w", "-t", "300", "stop"]).pipe(
          // Its directory may be deleted next: it must not run on.
          Effect.catch(() => pgProgram("pg_ctl", ["-D", dataDir, "-m", "immediate", "-w", "stop"])),
          Effect.tap(() => Effect.sync(() => log("stopped the cluster"))),
          Effect.catch(reportCleanupFailure(log, "stopping the cluster"))
        )
    )
    const urlOf = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`
    log(`PostgreSQL is up on 127.0.0.1:${port} (${dir})`)
    const shown = yield* attempt(() =>
      psql(urlOf("postgres"), ours.map(([name]) => `SELECT '${name}', current_setting('${name}');`).join("\n"))
    )
    const version = yield* attempt(() => psql(urlOf("postgres"), "SHOW server_version"))
    return {
      dir,
      port,
      reused: !fresh,
      settings: shown.split("\n").map((line) => {
        const [name, value] = line.split("|")
        return [name, value] as const
      }).filter(([name]) => !["port", "listen_addresses", "unix_socket_directories"].includes(name)),
      version,
      state,
      save: () => writeFileSync(join(dir, STATE_FILE), JSON.stringify(state)),
      urlOf
    }
  })

/** A database of the cluster for the benchmark, with pg_stat_statements; answers whether it was made now. */
export const ensureDatabase = (cluster: Cluster, name: string): Effect.Effect<boolean, BenchError> =>
  attempt(async () => {
    const exists = await psql(cluster.urlOf("postgres"), `SELECT 1 FROM pg_database WHERE datname = '${name}'`)
    if (exists === "") await psql(cluster.urlOf("postgres"), `CREATE DATABASE ${name}`)
    await psql(cluster.urlOf(name), "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return exists === ""
  })
