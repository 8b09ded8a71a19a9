/**
 * README: Change feed, the Server-Sent Events tail on a real server process
 * (PostgreSQL): heartbeats that carry the position, the headers, outside
 * MAX_IN_FLIGHT and REQUEST_TIMEOUT, its caps (429 with Retry-After), a slow
 * reader held to a bounded buffer that catches up page by page, a reader that
 * stops reading cut off after FEED_SLOW_CONSUMER_TIMEOUT with a metric, and
 * `retry:` before the close on SIGTERM.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import {
  dataHeaders,
  eventually,
  expectProblem,
  freshDatabase,
  openEventStream,
  postgresAvailable,
  type ServerProcess,
  sleep,
  startServer
} from "@strata/testing"
import { connect, type Socket } from "node:net"

const available = await postgresAvailable()

const metric = async (server: ServerProcess, name: string) => {
  const text = await (await fetch(`${server.base}/metrics`)).text()
  const line = text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
  return line === undefined ? 0 : Number(line.split(" ").at(-1))
}

/** A feed stream on a raw socket whose reading the test controls. */
const rawStream = (server: ServerProcess, path: string) => {
  const socket: Socket = connect(server.port, "127.0.0.1")
  let received = ""
  let closed = false
  socket.on("data", (chunk) => received += chunk.toString("utf8"))
  socket.on("close", () => closed = true)
  socket.on("error", () => closed = true)
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: Bearer ${server.apiKey}\r\n\r\n`
  )
  return {
    socket,
    received: () => received,
    records: () => received.split("event: record\n").length - 1,
    closed: () => closed
  }
}

/** Writes `batches` batches of `size` records of about `bytes` bytes each. */
const writeMany = async (server: ServerProcess, stream: string, batches: number, size: number, bytes: number) => {
  for (let i = 0; i < batches; i++) {
    const records = Array.from({ length: size }, (_, j) => ({ stream, data: { i, j, pad: "x".repeat(bytes) } }))
    const res = await fetch(`${server.base}/data/batch`, {
      method: "POST",
      headers: dataHeaders(server),
      body: JSON.stringify({ records })
    })
    expect(res.status).toBe(201)
  }
}

describe.skipIf(!available)("change feed streams (text/event-stream) on a server process", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let server: ServerProcess

  beforeAll(async () => {
    db = await freshDatabase()
    server = await startServer({
      DATABASE_URL: db.url,
      FEED_HEARTBEAT: "500ms",
      FEED_POLL_INTERVAL: "50ms",
      FEED_MAX_STREAMS_PER_KEY: "3",
      FEED_SLOW_CONSUMER_TIMEOUT: "3s",
      MAX_IN_FLIGHT: "2",
      REQUEST_TIMEOUT: "1s",
      SHUTDOWN_DELAY: "1s"
    })
  }, 60_000)

  afterAll(async () => {
    server?.child.kill("SIGKILL")
    await db?.drop()
  })

  it(
    "streams records and heartbeats with ids, past MAX_IN_FLIGHT and REQUEST_TIMEOUT, up to its cap per key",
    async () => {
      const streams = await Promise.all(
        [1, 2, 3].map(() => openEventStream(`${server.base}/streams/beat/changes?after=now`, dataHeaders(server)))
      )
      for (const s of streams) {
        expect(s.status).toBe(200)
        expect(s.headers.get("content-type")).toMatch(/^text\/event-stream/)
        expect(s.headers.get("x-accel-buffering")).toBe("no")
        expect(s.headers.get("cache-control")).toMatch(/no-cache/)
      }
      // Three open streams and MAX_IN_FLIGHT=2: a write still goes through.
      const written = await fetch(`${server.base}/data`, {
        method: "POST",
        headers: dataHeaders(server),
        body: JSON.stringify({ stream: "beat", data: { n: 1 } })
      })
      expect(written.status).toBe(201)
      const position = written.headers.get("strata-position")
      // Past REQUEST_TIMEOUT (1 s), the streams still get heartbeats.
      await sleep(1500)
      for (const s of streams) {
        const record = s.events.find((e) => e.event === "record")
        expect(record?.id).toBe(position)
        const beats = s.events.filter((e) => e.event === "heartbeat")
        expect(beats.length).toBeGreaterThanOrEqual(2)
        expect(JSON.parse(beats.at(-1)!.data).position).toBe(beats.at(-1)!.id)
      }
      // A heartbeat's id resumes without rescanning: nothing after it yet.
      const resumed = await (await fetch(
        `${server.base}/streams/beat/changes?after=${streams[0].events.at(-1)!.id}`,
        { headers: dataHeaders(server) }
      )).json() as { changes: Array<unknown> }
      expect(resumed.changes).toEqual([])
      // The fourth stream of the key is over FEED_MAX_STREAMS_PER_KEY.
      const refused = await fetch(`${server.base}/streams/beat/changes`, {
        headers: { ...dataHeaders(server), accept: "text/event-stream" }
      })
      await expectProblem(refused, 429, "rate-limited")
      expect(refused.headers.get("retry-after")).toMatch(/^\d+$/)
      for (const s of streams) s.abort()
      await Promise.all(streams.map((s) => s.ended))
      // Closed streams give their places back.
      await eventually(async () => (await metric(server, "strata_feed_connections")) === 0, 5000)
    },
    30_000
  )

  it("holds a slow reader to a bounded buffer and lets it catch up page by page", async () => {
    const reader = rawStream(server, "/streams/slow/changes?after=now")
    await eventually(() => reader.received().includes("retry:"), 5000)
    reader.socket.pause()
    // 8 MiB of records while the reader takes nothing: far more than the socket buffers hold.
    await writeMany(server, "slow", 16, 50, 10_000)
    await sleep(1000)
    const buffered = await metric(server, "strata_feed_buffered_bytes")
    // One page queued and one in the socket's buffer: 2 × 100 records of about 10 KB.
    expect(buffered).toBeLessThan(2 * 100 * 11_000)
    reader.socket.resume()
    await eventually(() => reader.records() === 800, 20_000)
    expect(reader.closed()).toBe(false)
    console.log(`slow reader: at most ${Math.round(buffered / 1024)} KiB held for it while 8 MiB were written`)
    reader.socket.destroy()
  }, 60_000)

  it("closes a reader that stops reading after FEED_SLOW_CONSUMER_TIMEOUT, and counts it", async () => {
    const before = await metric(server, "strata_feed_slow_consumers_closed_total")
    const reader = rawStream(server, "/streams/stuck/changes?after=now")
    await eventually(() => reader.received().includes("retry:"), 5000)
    reader.socket.pause()
    await writeMany(server, "stuck", 16, 50, 10_000)
    await eventually(async () => (await metric(server, "strata_feed_slow_consumers_closed_total")) > before, 15_000)
    reader.socket.resume()
    await eventually(() => reader.closed(), 5000)
  }, 60_000)

  it("tails only the records that pass the filters on data (README: Filters)", async () => {
    const stream = await openEventStream(
      `${server.base}/streams/sse-filtered/changes?after=now&data.n=gte.2&data.big=gt.9007199254740992`,
      dataHeaders(server)
    )
    await eventually(() => stream.retries.length >= 1, 5000)
    const body = `{"records":[${
      [0, 1, 2, 3, 4].map((n) => `{"stream":"sse-filtered","data":{"n":${n},"big":900719925474099${n === 4 ? 2 : 3}}}`)
        .join(",")
    }]}`
    const res = await fetch(`${server.base}/data/batch`, { method: "POST", headers: dataHeaders(server), body })
    expect(res.status).toBe(201)
    const records = () => stream.events.filter((e) => e.event === "record")
    await eventually(() => records().length >= 2, 5000)
    await sleep(300)
    stream.abort()
    expect(records().map((e) => (JSON.parse(e.data) as { data: { n: number } }).data.n)).toEqual([2, 3])
  }, 30_000)

  it("sends retry: and ends the stream on SIGTERM", async () => {
    const stream = await openEventStream(`${server.base}/changes?after=now`, dataHeaders(server))
    await eventually(() => stream.retries.length >= 1, 5000)
    server.child.kill("SIGTERM")
    await stream.ended
    expect(stream.retries.length).toBeGreaterThanOrEqual(2)
    const [code] = await server.exited
    expect(code).toBe(0)
  }, 30_000)
})
