/**
 * `pnpm bench feed` (docs/FEED.md): the change feed on one server process and
 * a throwaway PostgreSQL database.
 *
 * 1. Catch-up: `--rows` records written in batches of 1,000, then read from
 *    `earliest`, as JSON pages of 1,000 and as one Server-Sent Events stream:
 *    records a second.
 * 2. Commit to event: a stream tails `now` while POST /data runs at `--rate`
 *    a second for `--duration` seconds (16 connections); each record's latency
 *    is from its 201 to its event, P50/P99/max.
 * 3. Idle streams: the server's resident memory before and with `--streams`
 *    open idle streams.
 */
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { connect, type Socket } from "node:net"
import { attempt, type BenchError } from "./BenchError.ts"
import type { Auth } from "./Measure.ts"
import { throwawayDatabase } from "./Postgres.ts"
import { benchKey, serverEnv, serverProcess, strataCli } from "./Server.ts"

const log = (message: string) => console.error(`bench:feed: ${message}`)

export interface FeedBenchOptions {
  readonly rows: number
  readonly rate: number
  readonly duration: number
  readonly streams: number
}

const rssMiB = (pid: number) => {
  const status = readFileSync(`/proc/${pid}/status`, "utf8")
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
  return kb / 1024
}

const quantile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]

/** Reads a text/event-stream answer, calling `onRecord` with each record event's data and its arrival. */
const tail = async (url: string, auth: Auth, onRecord: (data: string, at: number) => void, signal: AbortSignal) => {
  const res = await fetch(url, { headers: { ...auth, accept: "text/event-stream" }, signal })
  const decoder = new TextDecoder()
  let buffer = ""
  try {
    for await (const chunk of res.body!) {
      const at = performance.now()
      buffer += decoder.decode(chunk as Uint8Array, { stream: true })
      let end: number
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        if (!block.startsWith("event: record\n")) continue
        const data = block.slice(block.indexOf("\ndata: ") + 7)
        onRecord(data, at)
      }
    }
  } catch {
    // aborted
  }
}

const post = async (base: string, auth: Auth, path: string, body: unknown) => {
  const res = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { ...auth, "content-type": "application/json" },
    body: JSON.stringify(body)
  })
  if (res.status !== 201) throw new Error(`POST ${path}: ${res.status} ${await res.text()}`)
  return res.json() as Promise<{ id: string }>
}

export const runFeedBench = (options: FeedBenchOptions): Effect.Effect<void, BenchError> =>
  Effect.scoped(Effect.gen(function*() {
    const databaseUrl = yield* throwawayDatabase(log)
    yield* strataCli(["migrate"], { DATABASE_URL: databaseUrl, LOG_LEVEL: "Warn" })
    const auth = yield* benchKey(databaseUrl)
    const { base, pid } = yield* serverProcess({
      env: serverEnv(databaseUrl, { FEED_MAX_STREAMS_PER_KEY: String(options.streams + 10) }),
      log
    })
    yield* attempt(async () => {
      // 1. Catch-up.
      const data = { amount: 1250, currency: "EUR", note: "x".repeat(200) }
      for (let written = 0; written < options.rows; written += 1000) {
        const n = Math.min(1000, options.rows - written)
        await post(base, auth, "/data/batch", {
          records: Array.from({ length: n }, (_, i) => ({ stream: `s${i % 10}`, key: `k${i % 100}`, data }))
        })
      }
      let started = performance.now()
      let after = "earliest"
      let read = 0
      for (;;) {
        const page = await (await fetch(`${base}/changes?after=${after}&limit=1000`, { headers: auth })).json() as {
          changes: Array<unknown>
          nextPosition: string
        }
        read += page.changes.length
        after = page.nextPosition
        if (page.changes.length === 0) break
      }
      const pagesRate = read / ((performance.now() - started) / 1000)
      started = performance.now()
      const done = new AbortController()
      let streamed = 0
      const streaming = tail(`${base}/changes?after=earliest`, auth, () => {
        if (++streamed === options.rows) done.abort()
      }, done.signal)
      await streaming
      const streamRate = streamed / ((performance.now() - started) / 1000)
      console.log(
        `catch-up from earliest, ${read} records: pages of 1000 ${Math.round(pagesRate)} records/s; one event stream ${
          Math.round(streamRate)
        } records/s`
      )

      // 2. Commit to event at a steady rate.
      const acked = new Map<string, number>()
      const arrived = new Map<string, number>()
      const live = new AbortController()
      const listening = tail(`${base}/changes?after=now`, auth, (text, at) => {
        const id = text.slice(7, 43)
        arrived.set(id, at)
      }, live.signal)
      await new Promise((resolve) => setTimeout(resolve, 500))
      const total = options.rate * options.duration
      const start = performance.now()
      let next = 0
      const worker = async () => {
        for (;;) {
          const i = next++
          if (i >= total) return
          const due = start + (i * 1000) / options.rate
          const wait = due - performance.now()
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
          const { id } = await post(base, auth, "/data", { stream: "live", key: `k${i % 100}`, data })
          acked.set(id, performance.now())
        }
      }
      await Promise.all(Array.from({ length: 16 }, worker))
      const deadline = performance.now() + 10_000
      while (arrived.size < acked.size && performance.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      live.abort()
      await listening
      const latencies = Array.from(acked, ([id, at]) => Math.max(0, (arrived.get(id) ?? Number.POSITIVE_INFINITY) - at))
        .toSorted((a, b) => a - b)
      const missing = latencies.filter((l) => !Number.isFinite(l)).length
      console.log(
        `commit to event at ${options.rate} POST/s for ${options.duration} s (${acked.size} records${
          missing > 0 ? `, ${missing} never arrived` : ""
        }): P50 ${quantile(latencies, 0.5).toFixed(1)} ms, P99 ${quantile(latencies, 0.99).toFixed(1)} ms, max ${
          latencies.at(-1)!.toFixed(1)
        } ms`
      )

      // 3. Idle streams.
      const auth2 = auth.authorization
      await new Promise((resolve) => setTimeout(resolve, 1000))
      const before = rssMiB(pid()!)
      const port = new URL(base).port
      const sockets: Array<Socket> = []
      let open = 0
      for (let i = 0; i < options.streams; i++) {
        const socket = connect(Number(port), "127.0.0.1")
        socket.on("data", (chunk: Buffer) => {
          if (chunk.toString().startsWith("HTTP/1.1 200")) open++
        })
        socket.on("error", () => {})
        socket.write(
          `GET /changes?after=now HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: ${auth2}\r\n\r\n`
        )
        sockets.push(socket)
        if (i % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 50))
      }
      const openBy = performance.now() + 30_000
      while (open < options.streams && performance.now() < openBy) {
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      await new Promise((resolve) => setTimeout(resolve, 3000))
      const withStreams = rssMiB(pid()!)
      console.log(
        `${open} idle event streams: resident memory ${before.toFixed(0)} MiB before, ${
          withStreams.toFixed(0)
        } MiB with them (${((withStreams - before) * 1024 / Math.max(1, open)).toFixed(1)} KiB a stream)`
      )
      for (const socket of sockets) socket.destroy()
    })
  }))
