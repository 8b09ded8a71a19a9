/**
 * Strata as the bench runs it: the server a process of its own (stopped when
 * the scope closes), and the server's CLI for tenants and keys. Both are this
 * workspace's unless a benchmark names another checkout's (`bench scale --server-main`).
 */
import { cliMain, serverMain, serverNodeFlags } from "@strata/server"
import { Effect, type Scope } from "effect"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { once } from "node:events"
import { createServer } from "node:net"
import { attempt, BenchError } from "./BenchError.ts"
import type { Auth } from "./Measure.ts"
import { TENANT } from "./Seed.ts"

export const HOST = "127.0.0.1"
const READY_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 15_000

/** An environment where `undefined` removes a variable. */
export type Environment = Readonly<Record<string, string | undefined>>

const withOverrides = (base: Environment, overrides: Environment): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...base }
  for (const [name, value] of Object.entries(overrides)) {
    if (value === undefined) delete env[name]
    else env[name] = value
  }
  return env
}

/** A port nothing listens on now (another process may still take it before the server does). */
export const freePort: Effect.Effect<number, BenchError> = attempt(async () => {
  const server = createServer().listen(0, HOST)
  await once(server, "listening")
  const address = server.address()
  server.close()
  if (address === null || typeof address === "string") throw new Error("could not pick a free port")
  return address.port
})

export interface ServerProcess {
  readonly base: string
  /** The current process's pid (undefined once it exited). */
  readonly pid: () => number | undefined
  /** Sends the current process a signal (`bench chaos` kills one with SIGKILL). */
  readonly signal: (signal: NodeJS.Signals) => void
  /** Starts it again on the same port (stopping the current process first), and waits until it is ready. */
  readonly restart: () => Promise<void>
}

const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null

const stop = async (child: ChildProcess): Promise<void> => {
  if (exited(child)) return
  const exit = once(child, "exit")
  child.kill("SIGTERM")
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS)
  await exit
  clearTimeout(timer)
}

const waitReady = async (base: string, child: ChildProcess): Promise<void> => {
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (exited(child)) throw new Error(`the server exited (${child.exitCode ?? child.signalCode}) before it was ready`)
    const status = await fetch(`${base}/health/ready`, { signal: AbortSignal.timeout(1_000) })
      .then((r) => r.status, () => 0)
    if (status === 200) return
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  throw new Error(`the server was not ready within ${READY_TIMEOUT_MS / 1000} s`)
}

/**
 * Starts the server on a free port of HOST with this process's environment and
 * `env` over it, and waits until /health/ready answers 200. Stopped (SIGTERM,
 * SIGKILL after 15 s) when the scope closes; an exit before that, other than
 * one `signal` asked for, is logged.
 */
export const serverProcess = (options: {
  readonly env: Environment
  readonly nodeArgs?: ReadonlyArray<string>
  /** The server's main.ts (default this workspace's). */
  readonly main?: string
  /** A file descriptor for the server's stdout and stderr (default: this process's). */
  readonly output?: number
  readonly log: (message: string) => void
}): Effect.Effect<ServerProcess, BenchError, Scope.Scope> =>
  Effect.gen(function*() {
    const port = yield* freePort
    const base = `http://${HOST}:${port}`
    const spawnOne = (): ChildProcess => {
      const child = spawn(process.execPath, [
        ...serverNodeFlags,
        ...(options.nodeArgs ?? []),
        options.main ?? serverMain
      ], {
        stdio: ["ignore", options.output ?? "inherit", options.output ?? "inherit"],
        env: withOverrides(process.env, { ...options.env, HOST, PORT: String(port) })
      })
      child.on("exit", (code, signal) => {
        if (!expected.has(child)) options.log(`the server on ${base} exited (${code ?? signal})`)
      })
      return child
    }
    /** Processes whose exit was asked for: a stop, or a signal sent on purpose. */
    const expected = new WeakSet<ChildProcess>()
    let current: ChildProcess = yield* Effect.acquireRelease(Effect.sync(spawnOne), () =>
      Effect.promise((): Promise<void> => {
        expected.add(current)
        return stop(current)
      }))
    yield* attempt(() =>
      waitReady(base, current)
    )
    return {
      base,
      pid: () => exited(current) ? undefined : current.pid,
      signal: (signal) => {
        if (signal === "SIGKILL" || signal === "SIGTERM") expected.add(current)
        current.kill(signal)
      },
      restart: async () => {
        expected.add(current)
        await stop(current)
        current = spawnOne()
        await waitReady(base, current)
      }
    }
  })

/**
 * Runs `strata <args>` (the server's CLI, default this workspace's) with `env` over
 * this process's environment; answers its stdout.
 */
export const strataCli = (
  args: ReadonlyArray<string>,
  env: Environment,
  cli: string = cliMain
): Effect.Effect<string, BenchError> =>
  Effect.callback<string, BenchError>((resume) => {
    execFile(
      process.execPath,
      [cli, ...args],
      { env: withOverrides(process.env, env) },
      (error, stdout, stderr) =>
        resume(
          error === null
            ? Effect.succeed(stdout.trim())
            : Effect.fail(new BenchError({ message: `strata ${args.join(" ")}: ${stderr.trim() || error.message}` }))
        )
    )
  })

/** The bench's API key: tenant `default` (the one `seed` fills), no practical rate limit. */
export const benchKey = (databaseUrl: string, cli?: string): Effect.Effect<Auth, BenchError> =>
  Effect.gen(function*() {
    const env: Environment = { DATABASE_URL: databaseUrl, LOG_LEVEL: "Warn" }
    // Fails harmlessly when the tenant exists.
    yield* Effect.ignore(strataCli(["tenants", "create", TENANT], env, cli))
    const secret = yield* strataCli(
      [
        "keys",
        "create",
        "--tenant",
        TENANT,
        "--scopes",
        "records:read,records:write,schemas:write",
        "--rate-limit-rps",
        "1000000000",
        "--rate-limit-burst",
        "1000000000"
      ],
      env,
      cli
    )
    return { authorization: `Bearer ${secret}` }
  })

/** The server's environment: this process's, with these over it (undefined: removed). */
export const serverEnv = (databaseUrl: string, overrides: Environment): Environment => ({
  DATABASE_URL: databaseUrl,
  ACCESS_LOG: "false",
  LOG_LEVEL: "Warn",
  ...overrides
})
