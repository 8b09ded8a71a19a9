/**
 * The real programs as child processes, for tests about what only a process
 * shows (signals, `kill -9`, sockets, stdout): the server (`serverMain`) and
 * the command-line tool (`cliMain`) of @strata/server.
 */
import { cliMain, serverMain } from "@strata/server"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { once } from "node:events"
import { freePort } from "./Network.ts"
import { sleep } from "./Waiting.ts"

/** Matches an API key anywhere in a text. */
export const API_KEY = /strata_[A-Za-z0-9_-]{43}/

type Env = Record<string, string | undefined>

/** Runs `pnpm strata <args>` (the same program, without pnpm's wrapper). */
export const strata = (args: ReadonlyArray<string>, env: Env) =>
  new Promise<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resolve) => {
    execFile(process.execPath, [cliMain, ...args], { env: { ...process.env, ...env } }, (
      error,
      stdout,
      stderr
    ) => resolve({ code: error === null ? 0 : (typeof error.code === "number" ? error.code : 1), stdout, stderr }))
  })

/** One key per database (DATABASE_URL or DATA_DIR), made with the CLI before the first server starts on it. */
const keys = new Map<string, string>()
const keyFor = async (env: Env): Promise<string> => {
  const where = env.DATABASE_URL ?? `dir:${env.DATA_DIR}`
  const known = keys.get(where)
  if (known !== undefined) return known
  await strata(["tenants", "create", "test"], env) // fails harmlessly when it exists
  const made = await strata(["keys", "create", "--tenant", "test", "--rate-limit-rps", "1000000"], env)
  if (made.code !== 0) throw new Error(`pnpm strata keys create failed: ${made.stderr}`)
  keys.set(where, made.stdout.trim())
  return made.stdout.trim()
}

export interface ServerProcess {
  readonly base: string
  readonly port: number
  readonly child: ChildProcess
  /** A key of tenant `test` with both scopes, when the server was started with one. */
  readonly apiKey: string | undefined
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>
  /** Everything the process wrote so far, stdout and stderr. */
  readonly output: () => string
  /** What it wrote to stdout alone (the log lines). */
  readonly stdout: () => string
}

/** The headers of a `/data` request to `server`: JSON, and its API key. */
export const dataHeaders = (server: ServerProcess, extra: Record<string, string> = {}): Record<string, string> => ({
  "content-type": "application/json",
  ...(server.apiKey === undefined ? {} : { authorization: `Bearer ${server.apiKey}` }),
  ...extra
})

/**
 * Starts the server with `env` on top of the test's environment and waits until
 * it is ready. Unless `withKey` is false, an API key for its database is made first.
 */
export const startServer = async (
  env: Env,
  options: { readonly port?: number; readonly withKey?: boolean } = {}
): Promise<ServerProcess> => {
  const apiKey = options.withKey === false ? undefined : await keyFor(env)
  const port = options.port ?? await freePort()
  const child = spawn(process.execPath, [serverMain], {
    env: { ...process.env, PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "Warn", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>
  let output = ""
  let stdout = ""
  child.stdout!.on("data", (d) => {
    output += d
    stdout += d
  })
  child.stderr!.on("data", (d) => output += d)
  const server = {
    base: `http://127.0.0.1:${port}`,
    port,
    child,
    apiKey,
    exited,
    output: () => output,
    stdout: () => stdout
  }
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) break
    const ready = await fetch(`${server.base}/health/ready`, { signal: AbortSignal.timeout(2000) }).then(
      (r) => r.status === 200,
      () => false
    )
    if (ready) return server
    await sleep(100)
  }
  child.kill("SIGKILL")
  throw new Error(`the server did not become ready; its output:\n${output}`)
}
