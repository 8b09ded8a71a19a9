/**
 * README, Bulk ingest: on PostgreSQL an atomic body is written while it still
 * arrives, into one transaction that commits only once the body has ended with
 * no bad line. What a user relies on: nobody sees its records before the 200,
 * a bad line or a client gone leaves nothing and no transaction open, other
 * writes go on meanwhile (even ones that need a new partition), and open bodies
 * take at most half of DATABASE_POOL_MAX. On the real process, with the
 * database looked at from outside.
 */
import { PgClient } from "@effect/sql-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import {
  dataHeaders,
  eventually,
  freshDatabase,
  postgresAvailable,
  type ServerProcess,
  sleep,
  startServer
} from "@strata/testing"
import { Effect, Redacted } from "effect"
import { Reactivity } from "effect/reactivity"

const line = (stream: string, i: number, occurredAt?: string) =>
  JSON.stringify({ stream, key: `k${i}`, ...(occurredAt === undefined ? {} : { occurredAt }), data: { i } })
const lines = (stream: string, from: number, to: number, occurredAt?: string) =>
  Array.from({ length: to - from + 1 }, (_, i) => line(stream, from + i, occurredAt)).join("\n") + "\n"

/** A body sent in two parts: `first` at once, `rest` when `open` is called (or the request is aborted). */
const gated = (first: string, rest: string) => {
  let open!: () => void
  const opened = new Promise<void>((resolve) => open = resolve)
  const encoder = new TextEncoder()
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      controller.enqueue(encoder.encode(first))
      await opened
      controller.enqueue(encoder.encode(rest))
      controller.close()
    }
  })
  return { body, open }
}

describe("an atomic bulk body written as it arrives, on PostgreSQL", async () => {
  const available = await postgresAvailable()
  let db: { url: string; drop: () => Promise<void> } | undefined
  let server: ServerProcess | undefined

  /** One query of the test's own, from outside the server. */
  const query = <A extends object>(text: string, params: ReadonlyArray<unknown> = []) =>
    Effect.runPromise(
      Effect.scoped(Effect.flatMap(
        PgClient.make({ url: Redacted.make(db!.url), maxConnections: 1 }),
        (sql) => sql.unsafe<A>(text, params as Array<unknown>)
      )).pipe(Effect.provide(Reactivity.layer))
    )
  /** Transactions of the server's left open between statements: an atomic body's, waiting for its next chunk. */
  const openTransactions = async () =>
    (await query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'`
    ))[0].n
  const countIn = async (table: "records" | "outbox" | "changes", stream: string) =>
    (await query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE stream = $1`, [stream]))[0].n

  const bulk = (body: string | ReadableStream<Uint8Array>, signal?: AbortSignal) =>
    fetch(`${server!.base}/data/bulk`, {
      method: "POST",
      headers: dataHeaders(server!, { "content-type": "application/x-ndjson" }),
      body,
      signal,
      duplex: "half"
    } as RequestInit)
  const post = (stream: string, occurredAt?: string) =>
    fetch(`${server!.base}/data`, {
      method: "POST",
      headers: dataHeaders(server!),
      body: line(stream, 0, occurredAt)
    })
  const newStream = () => `atomic-${Math.random().toString(36).slice(2)}`

  beforeAll(async () => {
    if (!available) return
    db = await freshDatabase()
    // Four connections: two open bodies at most.
    server = await startServer({ DATABASE_URL: db.url, DATABASE_POOL_MAX: "4", REQUEST_TIMEOUT: "30s" })
  }, 60_000)
  afterAll(async () => {
    server?.child.kill("SIGKILL")
    await server?.exited
    await db?.drop()
  })

  it.skipIf(!available)(
    "writes the first chunks before the body ends, seen by no one until the 200; other writes go on meanwhile",
    async () => {
      const stream = newStream()
      const { body, open } = gated(lines(stream, 1, 2500), lines(stream, 2501, 3000))
      const answer = bulk(body)
      await eventually(async () => (await openTransactions()) === 1, 10_000)
      expect(await countIn("records", stream)).toBe(0)
      // A single write, and one in a month no partition holds yet (made while the body's transaction is open).
      expect((await post(newStream())).status).toBe(201)
      expect((await post(newStream(), "2019-03-15T12:00:00Z")).status).toBe(201)
      open()
      const res = await answer
      expect(res.status).toBe(200)
      expect(await res.json()).toEqual({ received: 3000, accepted: 3000, rejected: 0, errors: [] })
      expect(await countIn("records", stream)).toBe(3000)
      expect(await countIn("changes", stream)).toBe(3000)
      expect(await openTransactions()).toBe(0)
    },
    60_000
  )

  it.skipIf(!available)("takes lines in a month no partition holds yet after its transaction opened", async () => {
    const stream = newStream()
    const { body, open } = gated(lines(stream, 1, 2500), lines(stream, 2501, 2510, "2018-06-15T08:30:00.000Z"))
    const answer = bulk(body)
    await eventually(async () => (await openTransactions()) === 1, 10_000)
    open()
    const res = await answer
    expect(res.status).toBe(200)
    expect(((await res.json()) as { accepted: number }).accepted).toBe(2510)
    const june = await fetch(
      `${server!.base}/data?stream=${stream}&from=2018-06-01T00:00:00Z&to=2018-07-01T00:00:00Z&limit=100`,
      { headers: dataHeaders(server!) }
    )
    const page = (await june.json()) as { records: Array<{ key: string; occurredAt: string }> }
    expect(page.records.map((r) => r.key).toSorted()).toEqual(
      Array.from({ length: 10 }, (_, i) => `k${2501 + i}`).toSorted()
    )
    expect(page.records[0].occurredAt).toBe("2018-06-15T08:30:00.000Z")
  }, 60_000)

  it.skipIf(!available)("a bad line after chunks were written rolls all of them back", async () => {
    const stream = newStream()
    const body = `${lines(stream, 1, 4799)}{"stream":"${stream}","data":\n${lines(stream, 4801, 5000)}`
    const res = await bulk(body)
    expect(res.status).toBe(400)
    const problem = (await res.json()) as { detail: string; errors: Array<{ line: number }> }
    expect(problem.detail).toBe("1 of 5000 lines are invalid; nothing was stored")
    expect(problem.errors.map((e) => e.line)).toEqual([4800])
    expect(await countIn("records", stream)).toBe(0)
    expect(await countIn("outbox", stream)).toBe(0)
    expect(await countIn("changes", stream)).toBe(0)
    expect(await openTransactions()).toBe(0)
  }, 60_000)

  it.skipIf(!available)(
    "an Idempotency-Key's retry replays the answer: the retry's transaction rolls back",
    async () => {
      const stream = newStream()
      const body = lines(stream, 1, 2500)
      const send = () =>
        fetch(`${server!.base}/data/bulk`, {
          method: "POST",
          headers: dataHeaders(server!, { "content-type": "application/x-ndjson", "idempotency-key": `k-${stream}` }),
          body
        })
      const first = await send()
      expect(first.status).toBe(200)
      const again = await send()
      expect(again.status).toBe(200)
      expect(again.headers.get("idempotent-replayed")).toBe("true")
      expect(await again.text()).toBe(await first.text())
      expect(await countIn("records", stream)).toBe(2500)
      await eventually(async () => (await openTransactions()) === 0, 10_000)
    },
    60_000
  )

  it.skipIf(!available)("a client that goes away mid-body leaves nothing stored and no transaction open", async () => {
    const stream = newStream()
    const { body } = gated(lines(stream, 1, 2500), "")
    const abort = new AbortController()
    const answer = bulk(body, abort.signal).catch((error: unknown) => error)
    await eventually(async () => (await openTransactions()) === 1, 10_000)
    abort.abort()
    expect(await answer).toBeInstanceOf(Error)
    await eventually(async () => (await openTransactions()) === 0, 10_000)
    expect(await countIn("records", stream)).toBe(0)
    expect((await post(stream)).status).toBe(201)
  }, 60_000)

  it.skipIf(!available)("holds at most half of DATABASE_POOL_MAX open: a third body waits its turn", async () => {
    const bodies = [newStream(), newStream(), newStream()].map((stream) => ({
      stream,
      ...gated(lines(stream, 1, 2500), lines(stream, 2501, 2600))
    }))
    const answers = bodies.map((b) => bulk(b.body))
    await eventually(async () => (await openTransactions()) === 2, 10_000)
    // The third has its first chunk ready, and no place: it stays at two.
    let most = 0
    for (let i = 0; i < 10; i++) {
      most = Math.max(most, await openTransactions())
      await sleep(50)
    }
    expect(most).toBe(2)
    expect((await post(newStream())).status).toBe(201)
    for (const b of bodies) b.open()
    for (const res of await Promise.all(answers)) expect(res.status).toBe(200)
    for (const b of bodies) expect(await countIn("records", b.stream)).toBe(2600)
  }, 60_000)
})
