/**
 * Events (README: Events): every stored record yields one event through the outbox;
 * with the bus down, failing or hanging, writes go on (the relay holds no
 * database connection while it publishes) and the outbox drains when it is
 * back; two relays on one database lose nothing, keep per-key order and never
 * publish at once (the relay lease).
 */
import { PgClient } from "@effect/sql-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import type { StoredRecord } from "@strata/domain"
import {
  acquireApp,
  dataHeaders,
  type Db,
  describeBackends,
  eventually,
  freshDatabase,
  makeTestApp,
  memory,
  memoryDb,
  pglite,
  postgres,
  postgresAvailable,
  RecordingBus,
  recordOf,
  sleep,
  startServer
} from "@strata/testing"
import { Context, Duration, Effect, Layer, ManagedRuntime, Redacted } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { layerStorage, layerStorageMemory } from "../src/App.ts"
import { EventBus, type KafkaMessage, type OutboxEvent, toKafkaMessage } from "../src/events/EventBus.ts"
import { HeldRecords } from "../src/events/HeldRecords.ts"
import { layerOutboxRelay, relayOnce, VACUUM_EVERY } from "../src/events/OutboxRelay.ts"
import { OutboxStore } from "../src/events/OutboxStore.ts"
import { AppConfig } from "../src/platform/config/AppConfig.ts"
import { parseExact } from "../src/platform/json/ExactJson.ts"
import { runMigrations } from "../src/platform/sql/Migrations.ts"
import { makeRecordId } from "../src/records/RecordId.ts"
import { recordText } from "../src/records/RecordJson.ts"
import { RecordStore, type RecordToStore } from "../src/records/RecordStore.ts"
import { RecordWriter } from "../src/records/RecordWriter.ts"

/** In-memory stores whose vacuum is counted, with a discarding bus, for the relay's upkeep. */
const vacuums = { n: 0 }
const countingVacuums = Layer.effect(
  OutboxStore,
  Effect.map(OutboxStore, (outbox) => OutboxStore.of({ ...outbox, vacuum: Effect.sync(() => void vacuums.n++) }))
).pipe(
  Layer.provideMerge(layerStorageMemory),
  Layer.provideMerge(EventBus.layerDiscard),
  Layer.provideMerge(HeldRecords.none),
  Layer.provideMerge(AppConfig.layerWith())
)

describe("the Kafka message of an event", () => {
  it("has key tenant/stream/key-or-id, the record as JSON value, and tenant, stream and id headers", () => {
    const record = {
      id: "019a5f0e-7c4b-7d1e-9a2f-3c4d5e6f7a8b",
      stream: "orders",
      key: null,
      occurredAt: "2026-01-01T00:00:00.000Z",
      ingestedAt: "2026-01-01T00:00:00.001Z",
      data: { a: 1 },
      schemaVersion: 3
    }
    const message = toKafkaMessage("strata.records", {
      seq: "1",
      tenant: "acme",
      messageKey: `acme/orders/${record.id}`,
      recordId: record.id,
      stream: record.stream,
      schemaVersion: record.schemaVersion,
      text: recordText(record),
      traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      storedAt: Date.now()
    })
    expect(message).toEqual({
      topic: "strata.records",
      key: `acme/orders/${record.id}`,
      value: JSON.stringify(record),
      headers: {
        "strata-tenant": "acme",
        "strata-stream": "orders",
        "strata-record-id": record.id,
        "strata-schema-version": "3",
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
      }
    })
  })
})

describe("events through the recording bus (test support)", () => {
  let runtime: ManagedRuntime.ManagedRuntime<RecordingBus | EventBus, unknown>
  let app: ReturnType<typeof makeTestApp>
  beforeAll(async () => {
    // One bus shared by the app and the test, so the test sees what the relay published.
    const bus = RecordingBus.layer.pipe(Layer.provide(AppConfig.layerWith()))
    runtime = ManagedRuntime.make(bus)
    const busContext = await runtime.runPromise(Effect.context<RecordingBus | EventBus>())
    app = makeTestApp(
      memoryDb,
      { outboxPollInterval: Duration.millis(10) },
      undefined,
      Layer.succeedContext(busContext)
    )
  })
  afterAll(async () => {
    await app?.dispose()
    await runtime?.dispose()
  })
  const bus = () => runtime.runPromise(RecordingBus.use(Effect.succeed))

  it("publishes one event per stored record, keyed tenant/stream/key", async () => {
    const stored = await recordOf(await app.json("/data", { stream: "orders", key: "customer-42", data: { a: 1 } }))
    const state = await bus()
    await eventually(() => state.published.some((m) => m.headers["strata-record-id"] === stored.id))
    const events = state.published.filter((m) => m.headers["strata-record-id"] === stored.id)
    expect(events).toHaveLength(1)
    expect(events[0].key).toBe("test/orders/customer-42") // the tenant of the key TestApp sends
    expect(JSON.parse(events[0].value)).toEqual(stored)
  })

  it("carries the request's W3C trace context into the event's traceparent header", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
    const res = await app.json("/data", { stream: "traced", data: {} }, {
      headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` }
    })
    const stored = await recordOf(res)
    const state = await bus()
    await eventually(() => state.published.some((m) => m.headers["strata-record-id"] === stored.id))
    const event = state.published.find((m) => m.headers["strata-record-id"] === stored.id)!
    expect(event.headers.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-0[01]$`))
  })

  it("keeps accepting writes while the bus is down, then drains every event once, in order per key", async () => {
    const state = await bus()
    state.failing = true
    const ids: Array<string> = []
    for (let i = 0; i < 30; i++) {
      const res = await app.json("/data", { stream: "outage", key: `k${i % 3}`, data: { i } })
      expect(res.status).toBe(201)
      ids.push((await recordOf(res)).id)
    }
    await sleep(100)
    expect(state.published.filter((m) => ids.includes(m.headers["strata-record-id"]))).toEqual([])
    state.failing = false
    await eventually(() => ids.every((id) => state.published.some((m) => m.headers["strata-record-id"] === id)))
    const published = state.published.filter((m) => ids.includes(m.headers["strata-record-id"]))
    expect(published.map((m) => m.headers["strata-record-id"]).toSorted()).toEqual(ids.toSorted())
    for (const key of ["k0", "k1", "k2"]) {
      const order = published.filter((m) => m.key.endsWith(`/${key}`)).map((m) => JSON.parse(m.value).data.i)
      expect(order).toEqual(order.toSorted((a, b) => a - b))
    }
  }, 30_000)
})

const available = await postgresAvailable()

describe.skipIf(!available)("two relays on one PostgreSQL database", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  beforeAll(async () => {
    db = await freshDatabase()
  })
  afterAll(() => db?.drop())

  it("publish every event exactly once between them, never both at once, in commit order per key", async () => {
    const published: Array<KafkaMessage & { readonly relay: number }> = []
    let publishing = 0
    let overlaps = 0
    // Each publish takes a while (a backlog builds up), and overlapping publishes are counted.
    const sharedBus = (relay: number) =>
      Layer.succeed(
        EventBus,
        EventBus.of({
          system: "test",
          publish: (events) =>
            Effect.gen(function*() {
              if (++publishing > 1) overlaps++
              yield* Effect.sleep("3 millis")
              for (const e of events) published.push({ ...toKafkaMessage("t", e), relay })
            }).pipe(Effect.ensuring(Effect.sync(() => publishing--)))
        })
      )
    const replica = (relay: number) =>
      ManagedRuntime.make(
        Layer.mergeAll(RecordWriter.layer, layerOutboxRelay).pipe(
          // No texts held: every event's record is read from the database.
          Layer.provideMerge(Layer.mergeAll(layerStorage, sharedBus(relay), HeldRecords.none)),
          Layer.provideMerge(Layer.effectDiscard(runMigrations)),
          Layer.provideMerge(PgClient.layer({ url: Redacted.make(db.url), maxConnections: 3 })),
          Layer.provideMerge(AppConfig.layerWith({ outboxBatch: 7, outboxPollInterval: Duration.millis(5) }))
        )
      )
    const a = replica(1)
    const b = replica(2)
    try {
      const writes: Array<string> = []
      for (let i = 0; i < 60; i++) {
        const runtime = i % 2 === 0 ? a : b
        const { records: [stored] } = await runtime.runPromise(
          RecordWriter.use((w) =>
            w.write([{
              tenant: "default",
              id: makeRecordId(Date.now()),
              stream: "s",
              key: `k${i % 4}`,
              occurredAt: new Date(),
              data: { i },
              dataText: JSON.stringify({ i }),
              traceparent: null,
              schemaVersion: null
            }])
          )
        )
        writes.push(stored.id)
      }
      await eventually(() => published.length >= writes.length, 10_000)
      const stats = await a.runPromise(OutboxStore.use((d) => d.stats))
      expect(stats.size).toBe(0)
      expect(overlaps).toBe(0)
      expect(published.map((m) => m.headers["strata-record-id"]).toSorted()).toEqual(writes.toSorted())
      for (const key of ["k0", "k1", "k2", "k3"]) {
        const order = published.filter((m) => m.key.endsWith(`/${key}`)).map((m) => JSON.parse(m.value).data.i)
        expect(order).toEqual(order.toSorted((x, y) => x - y))
      }
    } finally {
      await a.dispose()
      await b.dispose()
    }
  }, 60_000)
})

/** The i-th record to store in `stream` of tenant `t`: data `{ i }`, no schema, no trace. */
const numbered = (i: number, stream = "s", key: string | null = null): RecordToStore => ({
  tenant: "t",
  id: makeRecordId(Date.now()),
  stream,
  key,
  occurredAt: new Date(),
  data: { i },
  dataText: JSON.stringify({ i }),
  traceparent: null,
  schemaVersion: null
})

/** The stores of `db` in a runtime of their own, disposed after the suite. */
const storesOf = (db: Db) =>
  Effect.acquireRelease(
    Effect.sync(() => ManagedRuntime.make(db.layer.pipe(Layer.provide(AppConfig.layerWith())))),
    (runtime) => Effect.promise(() => runtime.dispose())
  )

describeBackends(
  "the relay lease",
  [memory, postgres],
  storesOf,
  ({ test }) => {
    test(
      "has one holder at a time, passes on when it expires or is released, tells a holder that lost it",
      async (runtime) => {
        const record = (i: number) => numbered(i, "s", "k")
        const numbers = (events: ReadonlyArray<OutboxEvent>) => events.map((e) => JSON.parse(e.text).data.i)
        const short = Duration.millis(300)
        const long = Duration.seconds(30)
        await runtime.runPromise(Effect.gen(function*() {
          const db = yield* RecordStore
          const outbox = yield* OutboxStore
          expect(yield* outbox.claim("a", short, 10)).toEqual([]) // nothing to publish: no lease taken
          expect(yield* outbox.claim("b", long, 10)).toEqual([])
          for (let i = 1; i <= 12; i++) yield* db.insert([record(i)]) // seq 10 and up sort after 9
          const first = yield* outbox.claim("a", short, 11)
          expect(numbers(first)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
          expect(yield* outbox.claim("b", long, 10)).toEqual([]) // a holds it
          expect(yield* outbox.ack("a", short, [first[0].seq, first[1].seq])).toBe(true)
          expect(numbers(yield* outbox.claim("a", short, 2))).toEqual([3, 4]) // renewed by its holder

          yield* Effect.sleep("500 millis") // a's lease expires: b takes over
          const taken = yield* outbox.claim("b", long, 100)
          expect(numbers(taken)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
          // a published 3 and 4 meanwhile: they go, but a learns it must stop.
          expect(yield* outbox.ack("a", short, [taken[0].seq, taken[1].seq])).toBe(false)
          expect(yield* outbox.claim("a", short, 10)).toEqual([])
          expect(yield* outbox.ack("b", long, [taken[2].seq])).toBe(true)
          yield* outbox.release("a") // not a's to give up
          expect(yield* outbox.claim("a", short, 10)).toEqual([])
          yield* outbox.release("b")
          expect(numbers(yield* outbox.claim("a", short, 10))).toEqual([6, 7, 8, 9, 10, 11, 12])
          expect((yield* outbox.stats).size).toBe(7)
        }))
      },
      30_000
    )
  }
)

describeBackends(
  "an event's record text",
  [postgres, pglite],
  storesOf,
  ({ test }) => {
    test("is the held text when the relay holds it, else read from the record, exact either way", async (runtime) => {
      const stored = (i: number) => ({
        tenant: "t",
        id: makeRecordId(Date.now()),
        stream: "texts",
        key: null,
        occurredAt: new Date(),
        // A number a double cannot hold: the read-back path must keep it too.
        data: (parseExact(`{"i":${i},"big":9007199254740993}`) as { value: StoredRecord["data"] }).value,
        dataText: `{"i":${i},"big":9007199254740993}`,
        traceparent: null,
        schemaVersion: i === 1 ? 4 : null
      })
      await runtime.runPromise(Effect.gen(function*() {
        const db = yield* RecordStore
        const outbox = yield* OutboxStore
        const { records: [one, two] } = yield* db.insert([stored(1), stored(2)])
        const held = new Map([[one.id, "held text of one"]])
        const events = yield* outbox.claim(
          "r",
          Duration.seconds(30),
          10,
          (tenant, id) => tenant === "t" ? held.get(id) : undefined
        )
        expect(events[0].text).toBe("held text of one")
        expect(events[1].text).toBe(recordText(two))
        expect(events[1].text).toContain(`"big":9007199254740993`)
        expect(events.map((e) => [e.recordId, e.stream, e.schemaVersion])).toEqual([
          [one.id, "texts", 4],
          [two.id, "texts", null]
        ])
      }))
    })
  }
)

describeBackends(
  "events whose record is gone",
  [postgres],
  (db) =>
    Effect.acquireRelease(
      Effect.sync(() =>
        ManagedRuntime.make(Layer.merge(
          db.layer.pipe(Layer.provide(AppConfig.layerWith())),
          PgClient.layer({ url: Redacted.make(db.url!), maxConnections: 1 })
        ))
      ),
      (runtime) => Effect.promise(() => runtime.dispose())
    ),
  ({ test }) => {
    test("are left out of a claim and out of the outbox, so they never hold up the rest", async (runtime) => {
      await runtime.runPromise(Effect.gen(function*() {
        const db = yield* RecordStore
        const outbox = yield* OutboxStore
        const sql = yield* PgClient.PgClient
        const { records: [, middle] } = yield* db.insert([
          numbered(1, "gone"),
          numbered(2, "gone"),
          numbered(3, "gone")
        ])
        // As retention leaves it when it drops a partition after the relay read the outbox.
        yield* sql`DELETE FROM records WHERE id = ${middle.id}`
        const events = yield* outbox.claim("r", Duration.seconds(30), 10)
        expect(events.map((e) => JSON.parse(e.text).data.i)).toEqual([1, 3])
        expect((yield* outbox.stats).size).toBe(2)
      }))
    })
  }
)

describe("outbox upkeep", () => {
  it.effect("the relay vacuums the outbox after every VACUUM_EVERY published events", () =>
    Effect.gen(function*() {
      const store = yield* RecordStore
      const rows = Array.from({ length: VACUUM_EVERY + 1 }, (_, i) => numbered(i))
      yield* store.insert(rows as [RecordToStore, ...Array<RecordToStore>])
      const upkeep = { deletedSinceVacuum: 0 }
      expect(yield* relayOnce("relay", upkeep)).toBe(VACUUM_EVERY + 1)
      expect(vacuums.n).toBe(1)
      expect(upkeep.deletedSinceVacuum).toBe(1)
    }).pipe(Effect.provide(countingVacuums)))

  describeBackends(
    "VACUUM of the outbox",
    [postgres, pglite],
    (db) =>
      Effect.map(
        Effect.acquireRelease(
          Effect.sync(() => ManagedRuntime.make(db.layer.pipe(Layer.provide(AppConfig.layerWith())))),
          (runtime) => Effect.promise(() => runtime.dispose())
        ),
        (runtime) => ({ runtime, url: db.url })
      ),
    ({ test }) => {
      test("runs outside a transaction, and PostgreSQL counts it", async ({ runtime, url }) => {
        // PGlite keeps no statistics to count it by: there it must only succeed.
        const vacuumCount = url === undefined ? undefined : () =>
          Effect.runPromise(
            Effect.gen(function*() {
              const sql = yield* PgClient.PgClient
              const [row] = yield* sql<{ readonly n: number }>`
                SELECT vacuum_count::int AS n FROM pg_stat_user_tables WHERE relname = 'outbox'`
              return row.n
            }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })))
          )
        await runtime.runPromise(Effect.void) // the layer (and its migrations) built
        const before = await vacuumCount?.()
        await runtime.runPromise(OutboxStore.use((outbox) => outbox.vacuum))
        if (vacuumCount !== undefined) expect(await vacuumCount()).toBe(before! + 1)
      })
    }
  )
})

/**
 * The relay must hold no database connection while it publishes: on the embedded
 * PGlite (a pool of ONE connection) a publish that hangs inside a transaction
 * would block every write until DB_TIMEOUT (a 503 for each POST).
 */
describeBackends(
  "with the bus hanging, then failing, then back,",
  [pglite, postgres],
  (db) =>
    Effect.gen(function*() {
      const bus = yield* Layer.build(RecordingBus.layer.pipe(Layer.provide(AppConfig.layerWith())))
      const app = yield* acquireApp(() =>
        makeTestApp(
          db.layer,
          { outboxPollInterval: Duration.millis(10), outboxPublishTimeout: Duration.millis(250) },
          undefined,
          Layer.succeedContext(bus)
        )
      )
      return { app, state: Context.get(bus, RecordingBus) }
    }),
  ({ test }) => {
    test(
      "POSTs keep answering 201 quickly, the events wait, then all go out in order per key",
      async ({ app, state }) => {
        const ids: Array<string> = []
        const post = async (i: number) => {
          const start = performance.now()
          const res = await app.json("/data", { stream: "outage", key: `k${i % 3}`, data: { i } })
          const elapsed = performance.now() - start
          expect(res.status).toBe(201)
          expect(elapsed).toBeLessThan(2_500) // well under DB_TIMEOUT (5 s), where a blocked pool answers 503
          ids.push((await recordOf(res)).id)
          await sleep(20) // the relay gets to take each new event (and hang or fail on it)
        }
        // The app starts (PGlite, migrations, the test's key) on its first request, which may be slow.
        expect((await app.json("/data", { stream: "warm-up", data: {} })).status).toBe(201)
        await eventually(() => state.published.length === 1)
        state.published.splice(0)

        state.hanging = true
        for (let i = 0; i < 15; i++) await post(i)
        state.hanging = false
        state.failing = true
        for (let i = 15; i < 30; i++) await post(i)
        expect(state.published).toEqual([])
        const waiting = await app.run(OutboxStore.use((d) => d.stats))
        expect(waiting.size).toBe(30)

        state.failing = false
        await eventually(
          () => ids.every((id) => state.published.some((m) => m.headers["strata-record-id"] === id)),
          30_000
        )
        // At least once; the first copy of each event comes in seq (here: write) order per key.
        const firsts = state.published.filter((m, i, all) =>
          all.findIndex((n) => n.headers["strata-record-id"] === m.headers["strata-record-id"]) === i
        )
        expect(firsts.map((m) => m.headers["strata-record-id"]).toSorted()).toEqual(ids.toSorted())
        for (const key of ["k0", "k1", "k2"]) {
          const order = firsts.filter((m) => m.key.endsWith(`/${key}`)).map((m) => JSON.parse(m.value).data.i)
          expect(order).toEqual(order.toSorted((a, b) => a - b))
        }
        await eventually(async () => (await app.run(OutboxStore.use((d) => d.stats))).size === 0, 10_000)
      },
      90_000
    )
  }
)

describe("the server on the embedded PGlite, with a Kafka broker that accepts connections and never answers", () => {
  it("answers every POST 201, well under DB_TIMEOUT", async () => {
    const sockets = new Set<Socket>()
    const broker = createServer((socket) => {
      sockets.add(socket) // read nothing, answer nothing
      socket.on("close", () => sockets.delete(socket))
    })
    await new Promise<void>((resolve) => broker.listen(0, "127.0.0.1", resolve))
    const dir = mkdtempSync(join(tmpdir(), "strata-blackhole-"))
    const server = await startServer({
      DATABASE_URL: undefined,
      DATA_DIR: dir,
      KAFKA_BROKERS: `127.0.0.1:${(broker.address() as { port: number }).port}`,
      OUTBOX_PUBLISH_TIMEOUT: "1s",
      OUTBOX_POLL_INTERVAL: "10ms"
    })
    try {
      for (let i = 0; i < 8; i++) {
        const start = performance.now()
        const res = await fetch(`${server.base}/data`, {
          method: "POST",
          headers: dataHeaders(server),
          body: JSON.stringify({ stream: "blackhole", data: { i } })
        })
        expect(res.status).toBe(201)
        expect(performance.now() - start).toBeLessThan(2_500)
        await sleep(150) // the relay takes the new event and waits on the broker
      }
      // The relay did wait on the broker, and gave up after OUTBOX_PUBLISH_TIMEOUT.
      await eventually(() => server.output().includes("the event bus did not answer within 1s"))
    } finally {
      server.child.kill("SIGKILL")
      await server.exited
      for (const socket of sockets) socket.destroy()
      broker.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})
