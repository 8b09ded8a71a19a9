/**
 * The real programs as child processes: the server (`src/main.ts`) and the
 * command-line tool (`src/cli/main.ts`), with the environment a test gives.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { once } from "node:events"
import { join } from "node:path"
import { freePort } from "./Network.ts"

const SRC = join(import.meta.dirname, "../../src")

export interface ServerProcess {
  readonly base: string
  readonly child: ChildProcess
  /** Everything it printed so far, stdout and stderr. */
  readonly output: () => string
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>
}

/** Starts the server on a free port and waits until it is ready. */
export const startServer = async (env: Record<string, string | undefined>): Promise<ServerProcess> => {
  const port = await freePort()
  const child = spawn(process.execPath, [join(SRC, "main.ts")], {
    env: { ...process.env, PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "Warn", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>
  let output = ""
  child.stdout!.on("data", (d) => output += d)
  child.stderr!.on("data", (d) => output += d)
  const base = `http://127.0.0.1:${port}`
  for (let i = 0; i < 120; i++) {
    const up = await fetch(`${base}/health/ready`, { signal: AbortSignal.timeout(2000) }).then(
      (r) => r.status === 200,
      () => false
    )
    if (up) return { base, child, output: () => output, exited }
    if (child.exitCode !== null) break
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  child.kill("SIGKILL")
  throw new Error(`server did not become ready:\n${output}`)
}

/** Runs `pnpm strata <args>` (the same program, without pnpm's wrapper). */
export const strata = (args: ReadonlyArray<string>, env: Record<string, string | undefined>) =>
  new Promise<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resolve) => {
    execFile(process.execPath, [join(SRC, "cli/main.ts"), ...args], { env: { ...process.env, ...env } }, (
      error,
      stdout,
      stderr
    ) => resolve({ code: error === null ? 0 : (typeof error.code === "number" ? error.code : 1), stdout, stderr }))
  })

/** Matches an API key anywhere in a text. */
export const API_KEY = /strata_[A-Za-z0-9_-]{43}/
