/**
 * Logs (README: Operations) of the real server process: JSON lines on stdout with time,
 * level, message, request id and trace ids, one access line per request (which
 * ACCESS_LOG=false turns off), and no secret or record content at info level.
 * The same process exports its spans, so this also checks main's wiring.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import {
  dataHeaders,
  freshDatabase,
  postgresAvailable,
  type ServerProcess,
  startOtlpReceiver,
  startServer
} from "@strata/testing"

const available = await postgresAvailable()
const suite = available ? describe : describe.skip

const DB_PASSWORD = "S3CRET-DB-PASS"
const OTLP_SECRET = "OTLP-SECRET-TOKEN"
const PAYLOAD = "PAYLOAD-MARKER-42"
const CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

/**
 * Starts the server with `env` (at info level, with a key made by the CLI), runs
 * `f` against it, stops it with SIGTERM and answers what it wrote: stdout
 * alone, and everything, and its key.
 */
const runServer = async (env: Record<string, string>, f: (server: ServerProcess) => Promise<void>) => {
  const server = await startServer({ LOG_LEVEL: "Info", SHUTDOWN_DELAY: "0s", ...env })
  try {
    await f(server)
    server.child.kill("SIGTERM")
    const [code] = await server.exited
    expect(code).toBe(0)
  } finally {
    server.child.kill("SIGKILL")
  }
  return { stdout: server.stdout(), output: server.output(), apiKey: server.apiKey! }
}

suite("logs of the server process", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>
  let databaseUrl: string
  beforeAll(async () => {
    db = await freshDatabase()
    receiver = await startOtlpReceiver()
    // The local server trusts connections, so any password is accepted: one to look for in the logs.
    const url = new URL(db.url)
    url.password = DB_PASSWORD
    databaseUrl = url.toString()
  }, 60_000)
  afterAll(async () => {
    await receiver?.close()
    await db?.drop()
  })

  it("are JSON lines with request and trace ids, an access line per request, and no secrets or payloads", async () => {
    let id = ""
    const { output, stdout, apiKey } = await runServer({
      DATABASE_URL: databaseUrl,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_EXPORTER_OTLP_HEADERS: `authorization=Bearer%20${OTLP_SECRET}`,
      OTEL_TRACES_SAMPLER_ARG: "1"
    }, async (server) => {
      const created = await fetch(`${server.base}/data`, {
        method: "POST",
        headers: dataHeaders(server, {
          "x-request-id": "req-logs-1",
          traceparent: `00-${CALLER_TRACE}-00f067aa0ba902b7-01`
        }),
        body: JSON.stringify({ stream: "logs", data: { note: PAYLOAD } })
      })
      expect(created.status).toBe(201)
      id = ((await created.json()) as { id: string }).id
      expect((await fetch(`${server.base}/data/${id}`, { headers: dataHeaders(server) })).status).toBe(200)
    })

    const lines = stdout.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>)
    for (const line of lines) {
      expect(Date.parse(String(line.time))).not.toBeNaN()
      expect(["trace", "debug", "info", "warn", "error", "fatal"]).toContain(line.level)
      expect(typeof line.message).toBe("string")
    }
    const post = lines.find((l) => l.method === "POST" && l.route === "/data")
    expect(post).toMatchObject({ level: "info", status: 201, requestId: "req-logs-1", traceId: CALLER_TRACE })
    expect(post!.spanId).toMatch(/^[0-9a-f]{16}$/)
    expect(post!.durationMs).toBeTypeOf("number")
    const get = lines.find((l) => l.method === "GET" && l.route === "/data/{id}")
    expect(get).toMatchObject({ status: 200 })
    expect(get!.requestId).toMatch(/^[0-9a-f-]{36}$/)
    expect(JSON.stringify(get)).not.toContain(id) // the route template, not the path
    const starting = lines.find((l) => l.message === "Starting Strata")
    expect(starting?.database).toContain(":***@")

    for (const secret of [DB_PASSWORD, OTLP_SECRET, apiKey, PAYLOAD]) {
      expect(output).not.toContain(secret)
    }
    // The process exported its server span, in the caller's trace, on the way out.
    expect(receiver.spans.find((s) => s.name === "POST /data")).toMatchObject({
      traceId: CALLER_TRACE,
      parentSpanId: "00f067aa0ba902b7"
    })
  }, 30_000) // a server process and the command-line tool start first

  it("has no access lines with ACCESS_LOG=false", async () => {
    const { stdout } = await runServer({ DATABASE_URL: databaseUrl, ACCESS_LOG: "false" }, async (server) => {
      expect((await fetch(`${server.base}/health/live`)).status).toBe(200)
      expect((await fetch(`${server.base}/data?stream=logs`, { headers: dataHeaders(server) })).status).toBe(200)
    })
    const lines = stdout.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(lines.some((l) => l.message === "Starting Strata")).toBe(true)
    expect(lines.filter((l) => l.route !== undefined)).toEqual([])
  }, 30_000) // a server process and the command-line tool start first
})
