/**
 * WORKERS (default 1): the server as that many processes sharing the port, for
 * a machine with more cores than one Node event loop can use. The primary only
 * supervises: it forks the workers (each a whole server: pools, caches, its own
 * outbox relay, which the relay lease keeps to one at a time), passes SIGTERM
 * and SIGINT on so each drains as one server would, replaces a worker that dies
 * on its own, and exits 0 once all have stopped after a signal. The kernel
 * spreads connections over the workers (each accepts on the shared socket).
 * The embedded PGlite serves one process, so WORKERS > 1 needs DATABASE_URL.
 */
import type { Option, Redacted } from "effect"
import cluster from "node:cluster"

/**
 * The number of workers to run, from settings already checked (WORKERS is 1–64),
 * or why it cannot be: the embedded PGlite serves one process.
 */
export const workersWanted = (
  settings: { readonly workers: number; readonly databaseUrl: Option.Option<Redacted.Redacted> }
): number | string =>
  settings.workers > 1 && settings.databaseUrl._tag === "None"
    ? "WORKERS: more than one worker needs DATABASE_URL (the embedded PGlite serves one process)"
    : settings.workers

/** In the primary: forks `n` workers and supervises them until a signal stops them all. */
export const superviseWorkers = (n: number): void => {
  cluster.schedulingPolicy = cluster.SCHED_NONE
  let stopping = false
  const line = (message: string, fields: Record<string, unknown> = {}) =>
    process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), level: "info", message, ...fields })}\n`)
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return
    stopping = true
    line("Stopping the workers", { signal })
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal)
  }
  process.on("SIGTERM", () => stop("SIGTERM"))
  process.on("SIGINT", () => stop("SIGINT"))
  cluster.on("exit", (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0)
      return
    }
    line("A worker stopped on its own; starting another", { pid: worker.process.pid, code, signal })
    cluster.fork()
  })
  for (let i = 0; i < n; i++) cluster.fork()
  line("Supervising workers", { workers: n })
}

/** True in the process that should run the server itself. */
export const isServerProcess = (): boolean => cluster.isWorker
