/**
 * `soak [--records N]`: the embedded default (PGlite, no KAFKA_BROKERS) under N
 * records (default 100,000), watching the server's heap. Without Kafka events
 * are discarded, so the heap must stay flat: the second half of the records may
 * grow it by less than 20 MB. A benchmark, not a test.
 *
 * Starts the server on a fresh DATA_DIR with a key made by the CLI, writes the
 * records with `POST /data/batch` (--batch records a request, SOAK_BATCH, default
 * 10, from --connections clients, SOAK_CONNECTIONS, default 8), and after a
 * warm-up, after half and after all of them waits until the outbox is empty, has
 * the server collect its garbage and reads its heap in use. (An idle server
 * collects nothing by itself, so its heap gauge would count garbage too.) The
 * collection goes through the inspector protocol: the server runs with
 * `--inspect` on a free loopback port. The directory, the server and the
 * inspector connection are scoped. Fails (exit 1) when the bound does.
 */
import { Effect, type Scope } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { attempt, BenchError } from "./BenchError.ts"
import { type Environment, freePort, HOST, serverProcess, strataCli } from "./Server.ts"

const BOUND_MB = 20

const log = (message: string) => console.error(`soak: ${message}`)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1)

export interface SoakOptions {
  readonly records: number
  readonly batch: number
  readonly connections: number
}

/** The server's inspector session, closed when the scope closes; `call` sends one protocol method. */
const inspectorSession = (inspectPort: number) =>
  Effect.acquireRelease(
    attempt(async () => {
      const [target] = await (await fetch(`http://${HOST}:${inspectPort}/json/list`)).json() as Array<
        { webSocketDebuggerUrl: string }
      >
      const inspector = new WebSocket(target.webSocketDebuggerUrl)
      await new Promise((resolve) => inspector.addEventListener("open", resolve, { once: true }))
      return inspector
    }),
    (inspector) => Effect.sync(() => inspector.close())
  ).pipe(Effect.map((inspector) => {
    let nextId = 0
    return (method: string, params: object = {}) =>
      new Promise<any>((resolve) => {
        const id = ++nextId
        const onMessage = (event: MessageEvent) => {
          const reply = JSON.parse(String(event.data))
          if (reply.id !== id) return
          inspector.removeEventListener("message", onMessage)
          resolve(reply.result)
        }
        inspector.addEventListener("message", onMessage)
        inspector.send(JSON.stringify({ id, method, params }))
      })
  }))

/** Writes the records, reads the settled heap three times; answers how much the second half grew it, in MB. */
const measure = async (
  base: string,
  key: string,
  call: (method: string, params?: object) => Promise<any>,
  { batch, connections, records }: SoakOptions,
  signal: AbortSignal
): Promise<number> => {
  const gauge = async (name: string) =>
    Number(new RegExp(`^${name} (\\S+)$`, "m").exec(await (await fetch(`${base}/metrics`)).text())?.[1] ?? NaN)
  let written = 0
  const write = async (count: number) => {
    const target = written + count
    await Promise.all(Array.from({ length: connections }, async () => {
      while (written < target) {
        written += batch
        const items = Array.from({ length: batch }, (_, i) => ({
          stream: "soak",
          key: `k${(written + i) % 500}`,
          data: { n: written + i, text: "x".repeat(200) }
        }))
        const res = await fetch(`${base}/data/batch`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
          body: JSON.stringify({ records: items }),
          signal
        })
        if (res.status !== 201) throw new Error(`POST /data/batch answered ${res.status}`)
        await res.arrayBuffer()
      }
    }))
  }
  const settledHeap = async () => {
    await sleep(6_000) // the outbox gauge is refreshed every 5 s
    while (await gauge("strata_outbox_events") !== 0) await sleep(500)
    await call("HeapProfiler.collectGarbage")
    await call("HeapProfiler.collectGarbage")
    const used = await call("Runtime.evaluate", {
      expression: "process.memoryUsage().heapUsed",
      returnByValue: true
    })
    return Number(used.result.value)
  }

  const start = Date.now()
  await write(5_000)
  const warm = await settledHeap()
  log(`after ${written} records (warm-up): heap ${mb(warm)} MB`)
  await write(records / 2 - written)
  const half = await settledHeap()
  log(`after ${written} records: heap ${mb(half)} MB`)
  await write(records - written)
  const full = await settledHeap()
  log(`after ${written} records: heap ${mb(full)} MB (${((Date.now() - start) / 1000).toFixed(0)} s in all)`)
  const growth = (full - half) / 1024 / 1024
  console.log(
    `heap in use: ${mb(warm)} MB after 5,000 records, ${mb(half)} MB after ${records / 2}, ${
      mb(full)
    } MB after ${records}: the second half grew it by ${growth.toFixed(1)} MB (bound ${BOUND_MB} MB)`
  )
  return growth
}

/** A fresh DATA_DIR, removed when the scope closes. */
const dataDir: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "strata-soak-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

export const runSoak = (options: SoakOptions): Effect.Effect<void, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const dir = yield* dataDir
    // The embedded default: no DATABASE_URL, no Kafka.
    const env: Environment = {
      LOG_LEVEL: process.env.LOG_LEVEL ?? "Warn",
      DATA_DIR: dir,
      ACCESS_LOG: "false",
      DATABASE_URL: undefined,
      KAFKA_BROKERS: undefined
    }
    yield* strataCli(["tenants", "create", "soak"], env)
    const key = yield* strataCli(["keys", "create", "--tenant", "soak", "--rate-limit-rps", "1000000000"], env)
    const inspectPort = yield* freePort
    const { base } = yield* serverProcess({ env, nodeArgs: [`--inspect=${HOST}:${inspectPort}`], log })
    const call = yield* inspectorSession(inspectPort)
    const growth = yield* attempt((signal) => measure(base, key, call, options, signal))
    if (!(growth < BOUND_MB)) {
      return yield* new BenchError({
        message: `the second half grew the heap by ${growth.toFixed(1)} MB, over ${BOUND_MB} MB`
      })
    }
  }))
