/**
 * A redis-server of the bench's own on a free port, for `bench chaos`: no
 * persistence, so a kill loses the cache as a real restart of a cache would.
 * It can be signalled (SIGKILL, SIGSTOP, SIGCONT) and started again on the same
 * port; it is stopped when the scope closes.
 */
import { Effect, type Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { connect } from "node:net"
import { attempt, type BenchError } from "./BenchError.ts"
import { freePort, HOST } from "./Server.ts"

const READY_TIMEOUT_MS = 10_000

export interface RedisProcess {
  readonly url: string
  readonly signal: (signal: NodeJS.Signals) => void
  /** Starts it again on the same port (after a kill), and waits until it answers. */
  readonly start: () => Promise<void>
}

/** True when something answers PING with PONG on the port within a second. */
const pong = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect(port, HOST)
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(1_000, () => done(false))
    socket.on("error", () => done(false))
    socket.on("data", (data) => done(data.toString().startsWith("+PONG")))
    socket.on("connect", () => socket.write("PING\r\n"))
  })

const spawnRedis = (port: number): ChildProcess => {
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", HOST, "--save", "", "--appendonly", "no", "--loglevel", "warning"],
    { stdio: ["ignore", "ignore", "inherit"] }
  )
  child.on("error", () => {}) // a missing binary shows as never answering, with the message below
  return child
}

const waitForPong = async (port: number, child: ChildProcess) => {
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`redis-server on port ${port} exited (${child.exitCode})`)
    if (await pong(port)) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`redis-server on port ${port} did not answer within ${READY_TIMEOUT_MS / 1000} s (is it on PATH?)`)
}

export const redisProcess: Effect.Effect<RedisProcess, BenchError, Scope.Scope> = Effect.gen(function*() {
  const port = yield* freePort
  let child: ChildProcess = spawnRedis(port)
  yield* Effect.addFinalizer(() =>
    Effect.promise(async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, "exit")
      child.kill("SIGCONT")
      child.kill("SIGKILL")
      await exited
    })
  )
  yield* attempt(() => waitForPong(port, child))
  return {
    url: `redis://${HOST}:${port}`,
    signal: (signal) => child.kill(signal),
    start: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, "exit")
        child.kill("SIGKILL")
        await exited
      }
      child = spawnRedis(port)
      await waitForPong(port, child)
    }
  }
})
