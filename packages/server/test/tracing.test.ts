/**
 * Traces (README: Operations) from the whole app on the real PostgreSQL, exported over
 * OTLP/HTTP to a receiver in the test: the span tree of a request, the caller's
 * `traceparent` as parent, the trace context in the event, and parent-based
 * ratio sampling.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import {
  eventually,
  freshDatabase,
  makeTestApp,
  pgDb,
  postgresAvailable,
  type ReceivedSpan,
  RecordingBus,
  startOtlpReceiver,
  type TestApp
} from "@strata/testing"
import { Duration, Effect, Layer, ManagedRuntime, Option } from "effect"
import type { EventBus } from "../src/events/EventBus.ts"
import { AppConfig, type Settings } from "../src/platform/config/AppConfig.ts"

const available = await postgresAvailable()
const suite = available ? describe : describe.skip

const CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
const CALLER_SPAN = "00f067aa0ba902b7"

suite("tracing over OTLP/HTTP", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>
  beforeAll(async () => {
    db = await freshDatabase()
    receiver = await startOtlpReceiver()
  })
  afterAll(async () => {
    await receiver?.close()
    await db?.drop()
  })

  /**
   * Runs `f` against an app that exports to the receiver, waits for the event
   * of `stream` if given, then disposes of the app (which flushes the
   * exporter) and answers the spans it exported and the events it published.
   */
  const traced = async (settings: Partial<Settings>, f: (app: TestApp) => Promise<void>, stream?: string) => {
    const runtime = ManagedRuntime.make(RecordingBus.layer.pipe(Layer.provide(AppConfig.layerWith())))
    const busContext = await runtime.runPromise(Effect.context<RecordingBus | EventBus>())
    const bus = await runtime.runPromise(RecordingBus.use(Effect.succeed))
    const app = makeTestApp(
      pgDb(db.url),
      {
        otlpEndpoint: Option.some(receiver.url),
        otlpProtocol: "http/json",
        serviceName: "strata-test",
        outboxPollInterval: Duration.millis(10),
        ...settings
      },
      undefined,
      Layer.succeedContext(busContext)
    )
    receiver.spans.length = 0
    try {
      await f(app)
      if (stream !== undefined) await eventually(() => bus.published.some((e) => e.headers["strata-stream"] === stream))
    } finally {
      await app.dispose()
      await runtime.dispose()
    }
    return { spans: [...receiver.spans], events: bus.published }
  }

  const byName = (spans: ReadonlyArray<ReceivedSpan>, name: string) => spans.filter((s) => s.name === name)

  it("exports a server span per request, parent of the database call, parent of its SQL statement", async () => {
    const { spans } = await traced({ tracesSampler: "parentbased_always_on" }, async (app) => {
      // A record first, so that its partition exists for the page to read (its
      // event is awaited, so that no later app finds the relay's lease taken).
      expect((await app.json("/data", { stream: "orders", data: { n: 1 } })).status).toBe(201)
      expect((await app.request("/data?stream=orders&limit=5")).status).toBe(200)
    }, "orders")
    const [server] = byName(spans, "GET /data")
    expect(server).toBeDefined()
    expect(server.kind).toBe(2)
    expect(server.parentSpanId).toBeUndefined()
    expect(server.serviceName).toBe("strata-test")
    expect(server.attributes).toMatchObject({
      "http.request.method": "GET",
      "http.route": "/data",
      "http.response.status_code": 200
    })
    const [list] = byName(spans, "Db.list")
    expect(list).toMatchObject({ traceId: server.traceId, parentSpanId: server.spanId })
    // The catalog's fingerprint, then the page, read from the partitions it names.
    const statements = spans.filter((s) => s.parentSpanId === list.spanId)
    const texts = statements.map((s) => String(s.attributes["db.query.text"]))
    expect(texts.some((text) => /^SELECT .* FROM \(\(SELECT .* FROM "records_\d{8}"/s.test(text))).toBe(true)
    for (const sql of statements) {
      expect(sql.kind).toBe(3)
      expect(sql.traceId).toBe(server.traceId)
    }
    // Statement text only, never the values bound to it.
    for (const text of texts) expect(text).not.toContain("orders")
  })

  it("continues the caller's trace and carries it into the event, whose publishing links back", async () => {
    const { events, spans } = await traced({ tracesSampler: "parentbased_always_on" }, async (app) => {
      const response = await app.json("/data", { stream: "traced", data: { n: 1 } }, {
        headers: { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01` }
      })
      expect(response.status).toBe(201)
    }, "traced")
    const [server] = byName(spans, "POST /data")
    expect(server).toMatchObject({ traceId: CALLER_TRACE, parentSpanId: CALLER_SPAN, kind: 2 })
    expect(server.attributes["http.response.status_code"]).toBe(201)
    const event = events.find((e) => e.headers["strata-stream"] === "traced")
    expect(event?.headers.traceparent).toBe(`00-${CALLER_TRACE}-${server.spanId}-01`)
    // The shared commit and the publish are traces of their own, linked to the request.
    const [commit] = byName(spans, "RecordWriter.groupCommit")
    expect(commit.links).toContainEqual({ traceId: CALLER_TRACE, spanId: server.spanId })
    expect(spans.some((s) => s.name === "Db.insert" && s.parentSpanId === commit.spanId)).toBe(true)
    const publish = byName(spans, "EventBus.publish").find((s) => s.links.some((l) => l.traceId === CALLER_TRACE))
    expect(publish).toMatchObject({ kind: 4 })
    // OpenTelemetry messaging attributes (the bus names its system; Kafka's is `kafka`).
    expect(publish?.attributes).toMatchObject({
      "messaging.system": "test",
      "messaging.operation.type": "send",
      "messaging.destination.name": "strata.records",
      "messaging.batch.message_count": expect.any(Number)
    })
  })

  it("with ratio 0 exports no trace the service starts, yet follows a caller's sampling decision", async () => {
    const { events, spans } = await traced(
      { tracesSampler: "parentbased_traceidratio", tracesSamplerArg: 0 },
      async (app) => {
        expect((await app.request("/data?stream=orders")).status).toBe(200)
        expect(
          (await app.request("/data?stream=unsampled", {
            headers: { traceparent: `00-${"1".repeat(32)}-${CALLER_SPAN}-00` }
          })).status
        ).toBe(200)
        expect(
          (await app.request("/data?stream=sampled", {
            headers: { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01` }
          })).status
        ).toBe(200)
        const stored = await app.json("/data", { stream: "unsampled-write", data: {} })
        expect(stored.status).toBe(201)
      },
      "unsampled-write"
    )
    // Only the sampled caller's request, with its children, all in the caller's trace.
    expect(spans.length).toBeGreaterThan(1)
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([CALLER_TRACE]))
    const [server] = byName(spans, "GET /data")
    expect(server.parentSpanId).toBe(CALLER_SPAN)
    // An unsampled request still hands its trace context on, marked unsampled.
    const event = events.find((e) => e.headers["strata-stream"] === "unsampled-write")
    expect(event?.headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/)
  })

  it("with ratio 1 exports every request's trace", async () => {
    const { spans } = await traced({ tracesSampler: "parentbased_traceidratio", tracesSamplerArg: 1 }, async (app) => {
      for (let i = 0; i < 5; i++) expect((await app.request(`/data?stream=s${i}`)).status).toBe(200)
    })
    const servers = byName(spans, "GET /data")
    expect(servers).toHaveLength(5)
    expect(new Set(servers.map((s) => s.traceId)).size).toBe(5)
  })

  it("leaves probes and scrapes untraced", async () => {
    const { spans } = await traced({ tracesSampler: "parentbased_always_on" }, async (app) => {
      expect((await app.request("/health/live")).status).toBe(200)
      expect((await app.request("/metrics")).status).toBe(200)
    })
    expect(spans.filter((s) => s.kind === 2)).toEqual([])
  })
})
