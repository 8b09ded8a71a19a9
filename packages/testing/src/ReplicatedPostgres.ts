/**
 * A PostgreSQL primary with one streaming replica, made by the test itself
 * (README: Read replicas): Debian's PostgreSQL 15 binaries, run as `postgres`
 * when the test runs as root (they refuse root), in a temporary directory, on
 * free ports. The replica is a `pg_basebackup -R` of the primary that streams
 * its WAL, with `recovery_min_apply_delay` when asked (a replica late on
 * purpose). `settings` are lines for both nodes' postgresql.conf after the
 * ones here (`shared_buffers = 256MB` for a benchmark): the replica's copy of
 * the primary's configuration carries them. Everything is removed by `stop`.
 */
import { execFile } from "node:child_process"
import { chmodSync, existsSync, mkdtempSync, rmSync } from "node:fs"
import { appendFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freePort } from "./Network.ts"
import { unavailable } from "./Services.ts"
import { sleep } from "./Waiting.ts"

const PG_BIN = process.env.PG_BIN ?? "/usr/lib/postgresql/15/bin"

const run = (program: string, args: ReadonlyArray<string>) =>
  new Promise<string>((resolve, reject) => {
    const [file, argv] = process.getuid?.() === 0
      ? ["runuser", ["-u", "postgres", "--", join(PG_BIN, program), ...args]]
      : [join(PG_BIN, program), [...args]]
    execFile(file, argv, { timeout: 120_000 }, (error, stdout, stderr) => {
      if (error === null) resolve(stdout)
      else reject(new Error(`${program} ${args.join(" ")} failed: ${stderr || error.message}`))
    })
  })

/** True when the PostgreSQL binaries are here; otherwise the rule of `unavailable`. */
export const replicationAvailable = (): boolean =>
  existsSync(join(PG_BIN, "initdb")) || unavailable(`PostgreSQL binaries in ${PG_BIN}`, "the read replica suites")

export interface ReplicatedPostgres {
  readonly primaryUrl: string
  readonly replicaUrl: string
  /** The nodes' data directories (their postmaster.pid names each postmaster). */
  readonly primaryDir: string
  readonly replicaDir: string
  /** A SQL statement on the primary or the replica, through psql; its output unaligned. */
  readonly psql: (node: "primary" | "replica", statement: string) => Promise<string>
  /** Stops the replica (`pg_ctl stop -m fast`); `startReplica` starts it again. */
  readonly stopReplica: () => Promise<void>
  readonly startReplica: () => Promise<void>
  /** The primary dies (`pg_ctl stop -m immediate`: no shutdown checkpoint, as a crash). */
  readonly killPrimary: () => Promise<void>
  /** The replica becomes a primary (`pg_ctl promote`), and waits until it takes writes. */
  readonly promoteReplica: () => Promise<void>
  /** Sets the replica's `recovery_min_apply_delay` ("0" for none) and reloads it. */
  readonly setApplyDelay: (delay: string) => Promise<void>
  /** Until the replica has replayed everything the primary has written. */
  readonly caughtUp: () => Promise<void>
  readonly stop: () => Promise<void>
}

const SETTINGS = (port: number, dir: string) =>
  [
    `port = ${port}`,
    `listen_addresses = '127.0.0.1'`,
    `unix_socket_directories = '${dir}'`,
    "wal_level = replica",
    "max_wal_senders = 4",
    "hot_standby = on",
    "hot_standby_feedback = on",
    "shared_buffers = 64MB",
    "max_connections = 100",
    // A test cluster: nothing here must survive the machine.
    "fsync = off",
    "full_page_writes = off"
  ].join("\n")

export const startReplicatedPostgres = async (
  options: {
    readonly applyDelay?: string
    /** postgresql.conf lines for both nodes, after (so over) the ones above. */
    readonly settings?: ReadonlyArray<string>
  } = {}
): Promise<ReplicatedPostgres> => {
  const root = mkdtempSync(join(tmpdir(), "strata-replicas-"))
  chmodSync(root, 0o777)
  const primaryDir = join(root, "primary")
  const replicaDir = join(root, "replica")
  const [primaryPort, replicaPort] = [await freePort(), await freePort()]
  const url = (port: number) => `postgres://postgres@127.0.0.1:${port}/postgres`
  const ctl = (dir: string, ...args: ReadonlyArray<string>) =>
    run("pg_ctl", ["-D", dir, "-l", `${dir}.log`, "-w", "-t", "60", ...args])

  let stopped = false
  const stop = async () => {
    if (stopped) return
    stopped = true
    for (const dir of [replicaDir, primaryDir]) {
      if (existsSync(join(dir, "postmaster.pid"))) await ctl(dir, "-m", "immediate", "stop").catch(() => undefined)
    }
    rmSync(root, { recursive: true, force: true })
  }
  const start = async () => {
    await run("initdb", ["-D", primaryDir, "--auth=trust", "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8"])
    // pg_basebackup copies this file to the replica: the settings are both nodes'.
    await appendFile(
      join(primaryDir, "postgresql.conf"),
      `\n${SETTINGS(primaryPort, root)}\n${(options.settings ?? []).map((line) => `${line}\n`).join("")}`
    )
    await ctl(primaryDir, "start")
    await run("pg_basebackup", [
      "-h",
      "127.0.0.1",
      "-p",
      String(primaryPort),
      "-U",
      "postgres",
      "-D",
      replicaDir,
      "-R",
      "-X",
      "stream",
      "-c",
      "fast"
    ])
    // The copied postgresql.conf names the primary's port: the later line wins.
    await appendFile(
      join(replicaDir, "postgresql.conf"),
      `\nport = ${replicaPort}\n${
        options.applyDelay === undefined ? "" : `recovery_min_apply_delay = '${options.applyDelay}'\n`
      }`
    )
    await ctl(replicaDir, "start")
    // Streaming, not only started.
    for (let i = 0;; i++) {
      const streaming = await psql("primary", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
      if (streaming === "1") break
      if (i > 300) throw new Error("the replica never streamed")
      await sleep(100)
    }
  }

  const psql = (node: "primary" | "replica", statement: string) =>
    run("psql", [
      "-h",
      "127.0.0.1",
      "-p",
      String(node === "primary" ? primaryPort : replicaPort),
      "-U",
      "postgres",
      "-At",
      "-c",
      statement
    ]).then((out) => out.trim())

  const caughtUp = async () => {
    const target = await psql("primary", "SELECT pg_current_wal_lsn()")
    for (let i = 0; i < 600; i++) {
      const ok = await psql("replica", `SELECT pg_last_wal_replay_lsn() >= '${target}'::pg_lsn`).catch(() => "f")
      if (ok === "t") return
      await sleep(100)
    }
    throw new Error("the replica did not catch up in 60 s")
  }
  // A start that fails halfway leaves nothing running behind it.
  await start().catch(async (e: unknown) => {
    await stop()
    throw e
  })

  return {
    primaryUrl: url(primaryPort),
    replicaUrl: url(replicaPort),
    primaryDir,
    replicaDir,
    psql,
    stopReplica: () => ctl(replicaDir, "-m", "fast", "stop").then(() => undefined),
    startReplica: () => ctl(replicaDir, "start").then(() => undefined),
    killPrimary: () => ctl(primaryDir, "-m", "immediate", "stop").then(() => undefined),
    promoteReplica: async () => {
      await ctl(replicaDir, "promote")
      for (let i = 0; i < 300; i++) {
        if (await psql("replica", "SELECT pg_is_in_recovery()") === "f") return
        await sleep(100)
      }
      throw new Error("the replica was not promoted in 30 s")
    },
    setApplyDelay: async (delay) => {
      await appendFile(join(replicaDir, "postgresql.conf"), `recovery_min_apply_delay = '${delay}'\n`)
      await ctl(replicaDir, "reload")
    },
    caughtUp,
    stop
  }
}
