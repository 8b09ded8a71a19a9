/**
 * PostgreSQL through `psql`, so the bench needs no database driver of its own,
 * and the throwaway databases the benchmarks run on.
 */
import { Effect, type Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { attempt, BenchError, reportCleanupFailure } from "./BenchError.ts"

/** Where throwaway databases are created and dropped. */
export const ADMIN_URL = "postgres://root@127.0.0.1:5432/postgres"

export const spawnPsql = (
  databaseUrl: string,
  args: ReadonlyArray<string>,
  stdio: ["pipe", "pipe" | "ignore", "pipe"]
): ChildProcess =>
  spawn("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", ...args, "-d", databaseUrl], {
    stdio,
    // Fail fast rather than hang when nothing listens.
    env: { ...process.env, PGCONNECT_TIMEOUT: process.env.PGCONNECT_TIMEOUT ?? "5" }
  })

export const psqlSpawnError = (e: NodeJS.ErrnoException): Error =>
  e.code === "ENOENT" ? new Error("psql is not on PATH; it is needed to talk to PostgreSQL") : e

/** Runs an SQL script through psql and answers its unaligned output; fails with psql's message. */
export const psql = (databaseUrl: string, sql: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const child = spawnPsql(databaseUrl, ["-A", "-t"], ["pipe", "pipe", "pipe"])
    let out = ""
    let err = ""
    child.stdout!.setEncoding("utf8").on("data", (s: string) => out += s)
    child.stderr!.setEncoding("utf8").on("data", (s: string) => err += s)
    child.on("error", (e) => reject(psqlSpawnError(e)))
    child.on(
      "close",
      (code) => code === 0 ? resolve(out.trim()) : reject(new Error(err.trim() || `psql exited ${code}`))
    )
    child.stdin!.on("error", () => {}) // psql's exit status carries the real failure
    child.stdin!.end(sql)
  })

export const query = (databaseUrl: string, sql: string): Effect.Effect<string, BenchError> =>
  attempt(() => psql(databaseUrl, sql))

/**
 * One psql kept open, for statements run often (a poll every few ms would
 * otherwise pay a process and a connection each): `run` answers a statement's
 * unaligned output, one statement at a time. Closed when the scope closes.
 */
export const psqlSession = (
  databaseUrl: string
): Effect.Effect<{ readonly run: (sql: string) => Promise<string> }, BenchError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawnPsql(databaseUrl, ["-A", "-t"], ["pipe", "pipe", "pipe"])
      const marker = `--psql-session-${randomBytes(6).toString("hex")}--`
      let out = ""
      let err = ""
      let pending: { resolve: (out: string) => void; reject: (e: Error) => void } | undefined
      let failed: Error | undefined
      const fail = (e: Error) => {
        failed ??= e
        pending?.reject(failed)
        pending = undefined
      }
      child.stdout!.setEncoding("utf8").on("data", (s: string) => {
        out += s
        const end = out.indexOf(`${marker}\n`)
        if (end < 0 || pending === undefined) return
        const answer = out.slice(0, end).trim()
        out = out.slice(end + marker.length + 1)
        pending.resolve(answer)
        pending = undefined
      })
      child.stderr!.setEncoding("utf8").on("data", (s: string) => err += s)
      child.on("error", (e) => fail(psqlSpawnError(e)))
      child.on("close", (code) => fail(new Error(err.trim() || `psql exited ${code}`)))
      child.stdin!.on("error", () => {}) // the exit carries the real failure
      const run = (sql: string) =>
        new Promise<string>((resolve, reject) => {
          if (failed !== undefined) return reject(failed)
          if (pending !== undefined) return reject(new Error("psqlSession runs one statement at a time"))
          pending = { resolve, reject }
          child.stdin!.write(`${sql.trim().replace(/;$/, "")};\n\\echo ${marker}\n`)
        })
      return { child, run }
    }),
    ({ child }) =>
      Effect.promise(async () => {
        if (child.exitCode !== null || child.signalCode !== null) return
        const closed = new Promise((resolve) => child.once("close", resolve))
        child.stdin!.end()
        await closed
      })
  ).pipe(Effect.map(({ run }) => ({ run })))

/** Fails with what to do when PostgreSQL does not answer at `databaseUrl`. */
export const checkReachable = (databaseUrl: string, hint: string): Effect.Effect<void, BenchError> =>
  query(databaseUrl, "SELECT 1").pipe(
    Effect.mapError((e) => {
      const { hostname, port, username } = new URL(databaseUrl)
      return new BenchError({
        message: `PostgreSQL is not reachable at ${hostname}:${port || 5432} as user ${username || "(default)"}: ` +
          `${e.message}\n${hint}`
      })
    })
  )

/**
 * A new, empty database on the local PostgreSQL, dropped when the scope closes
 * (FORCE: a server that died mid-run may have left connections behind).
 */
export const throwawayDatabase = (log: (message: string) => void): Effect.Effect<string, BenchError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      yield* checkReachable(ADMIN_URL, "Start it, or point BENCH_DATABASE_URL at a database to use.")
      const name = `strata_bench_${randomBytes(4).toString("hex")}`
      yield* query(ADMIN_URL, `CREATE DATABASE ${name}`)
      const url = new URL(ADMIN_URL)
      url.pathname = `/${name}`
      return url.toString()
    }),
    (databaseUrl) =>
      query(ADMIN_URL, `DROP DATABASE IF EXISTS ${databaseName(databaseUrl)} WITH (FORCE)`).pipe(
        Effect.catch(reportCleanupFailure(log, "dropping the database"))
      )
  )

export const databaseName = (databaseUrl: string): string => new URL(databaseUrl).pathname.slice(1)
