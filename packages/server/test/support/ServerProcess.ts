/**
 * The real server (`src/main.ts`) as a child process on a free port, for tests
 * about what only a process shows: signals, `kill -9`, sockets.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { createServer } from "node:net"
import { join } from "node:path"

export const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port
      server.close(() => resolve(port))
    })
  })

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * The headers of every `/data` request a child-process test sends: the one
 * place to add what the routes require of a client (such as an API key).
 */
export const dataHeaders = (extra: Record<string, string> = {}): Record<string, string> => ({
  "content-type": "application/json",
  ...extra
})

export interface ServerProcess {
  readonly base: string
  readonly port: number
  readonly child: ChildProcess
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>
  /** Everything the process wrote so far, for failure messages. */
  readonly output: () => string
}

/** Starts the server with `env` on top of the test's environment and waits until it is ready. */
export const startServer = async (env: Record<string, string>, port?: number): Promise<ServerProcess> => {
  const p = port ?? await freePort()
  const child = spawn(process.execPath, [join(import.meta.dirname, "../../src/main.ts")], {
    env: { ...process.env, PORT: String(p), HOST: "127.0.0.1", LOG_LEVEL: "Warn", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>
  let output = ""
  child.stdout!.on("data", (d) => output += d)
  child.stderr!.on("data", (d) => output += d)
  const server = { base: `http://127.0.0.1:${p}`, port: p, child, exited, output: () => output }
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
