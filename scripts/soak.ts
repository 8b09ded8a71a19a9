/**
 * `pnpm soak [--records N]`: the embedded default (PGlite, no KAFKA_BROKERS)
 * under N records (default 100,000), watching the server's heap. Without Kafka
 * events are discarded, so the heap must stay flat: the second half of the
 * records may grow it by less than 20 MB. A benchmark, not a test.
 *
 * Starts the server on a fresh DATA_DIR with a key made by the CLI, writes the
 * records with `POST /data/batch` (SOAK_BATCH records a request, default 10, from
 * SOAK_CONNECTIONS clients, default 8), and after a warm-up, after half and after
 * all of them waits until the outbox is empty, has the server collect its
 * garbage and reads its heap in use. (An idle server collects nothing by itself,
 * so its heap gauge would count garbage too.) The collection goes through the
 * inspector protocol: the server runs with `--inspect` on a free loopback port.
 * Exits 1 when the bound fails.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { once } from "node:events"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"

const ROOT = new URL("..", import.meta.url).pathname
const { values } = parseArgs({ options: { records: { type: "string", default: "100000" } } })
const RECORDS = Number(values.records)
const BATCH = Number(process.env.SOAK_BATCH ?? 10)
const CONNECTIONS = Number(process.env.SOAK_CONNECTIONS ?? 8)
const BOUND_MB = 20

const log = (message: string) => console.error(`soak: ${message}`)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1)

const main = async () => {
  const dir = mkdtempSync(join(tmpdir(), "strata-soak-"))
  const env: NodeJS.ProcessEnv = { LOG_LEVEL: "Warn", ...process.env, DATA_DIR: dir, ACCESS_LOG: "false" }
  delete env.DATABASE_URL
  delete env.KAFKA_BROKERS
  const cli = (args: ReadonlyArray<string>) =>
    new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        ["packages/server/src/cli/main.ts", ...args],
        { cwd: ROOT, env },
        (e, out, err) => e === null ? resolve(out.trim()) : reject(new Error(err))
      )
    )
  let server: ChildProcess | undefined
  try {
    await cli(["tenants", "create", "soak"])
    const key = await cli(["keys", "create", "--tenant", "soak", "--rate-limit-rps", "1000000000"])
    const probe = createServer().listen(0, "127.0.0.1")
    await once(probe, "listening")
    const port = (probe.address() as { port: number }).port
    probe.close()
    const base = `http://127.0.0.1:${port}`
    const probe2 = createServer().listen(0, "127.0.0.1")
    await once(probe2, "listening")
    const inspectPort = (probe2.address() as { port: number }).port
    probe2.close()
    server = spawn(process.execPath, [`--inspect=127.0.0.1:${inspectPort}`, "packages/server/src/main.ts"], {
      cwd: ROOT,
      stdio: ["ignore", "inherit", "inherit"],
      env: { ...env, HOST: "127.0.0.1", PORT: String(port) }
    })
    server.on("exit", (code, signal) => log(`the server exited (${code ?? signal})`))
    while ((await fetch(`${base}/health/ready`).then((r) => r.status, () => 0)) !== 200) await sleep(200)

    const gauge = async (name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, "m").exec(await (await fetch(`${base}/metrics`)).text())?.[1] ?? NaN)
    let written = 0
    const write = async (count: number) => {
      const target = written + count
      await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
        while (written < target) {
          written += BATCH
          const records = Array.from({ length: BATCH }, (_, i) => ({
            stream: "soak",
            key: `k${(written + i) % 500}`,
            data: { n: written + i, text: "x".repeat(200) }
          }))
          const res = await fetch(`${base}/data/batch`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
            body: JSON.stringify({ records })
          })
          if (res.status !== 201) throw new Error(`POST /data/batch answered ${res.status}`)
          await res.arrayBuffer()
        }
      }))
    }
    const [target] = await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json() as Array<
      { webSocketDebuggerUrl: string }
    >
    const inspector = new WebSocket(target.webSocketDebuggerUrl)
    await new Promise((resolve) => inspector.addEventListener("open", resolve, { once: true }))
    let nextId = 0
    const call = (method: string, params: object = {}) =>
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
    await write(RECORDS / 2 - written)
    const half = await settledHeap()
    log(`after ${written} records: heap ${mb(half)} MB`)
    await write(RECORDS - written)
    const full = await settledHeap()
    log(`after ${written} records: heap ${mb(full)} MB (${((Date.now() - start) / 1000).toFixed(0)} s in all)`)
    const growth = (full - half) / 1024 / 1024
    console.log(
      `heap in use: ${mb(warm)} MB after 5,000 records, ${mb(half)} MB after ${RECORDS / 2}, ${
        mb(full)
      } MB after ${RECORDS}: the second half grew it by ${growth.toFixed(1)} MB (bound ${BOUND_MB} MB)`
    )
    inspector.close()
    if (!(growth < BOUND_MB)) process.exitCode = 1
  } finally {
    if (server !== undefined && server.exitCode === null) {
      server.kill("SIGTERM")
      await once(server, "exit")
    }
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
