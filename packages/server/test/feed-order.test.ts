/**
 * README: Change feed, the order guarantee, on a real PostgreSQL with two
 * server processes: many writers (single POSTs, batches, group commits) on
 * both, transactions held open on purpose (they take their transaction id
 * first and commit seconds later, after later ones), one of them rolled back,
 * while a reader tails the feed over Server-Sent Events and moves from one
 * process to the other halfway with Last-Event-ID. Afterwards the reader's
 * records equal the acknowledged ones, each once, in each key's order.
 *
 * A naive reader (`WHERE (xid, n) > last`, without the horizon) runs beside
 * it on the same log, to show the held transactions are the case that breaks
 * such a reader: it skips them.
 */
import { PgClient } from "@effect/sql-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import {
  dataHeaders,
  eventually,
  freshDatabase,
  openEventStream,
  postgresAvailable,
  type ServerProcess,
  sleep,
  startServer
} from "@strata/testing"
import { Effect, Redacted, Scope } from "effect"
import { Reactivity } from "effect/reactivity"
import { randomUUID } from "node:crypto"
import { makeRecordId } from "../src/records/RecordId.ts"

const available = await postgresAvailable()

/** A connection of the test's own, outside the servers. */
const sqlClient = async (url: string) => {
  const scope = Effect.runSync(Scope.make())
  const sql = await Effect.runPromise(
    Scope.provide(scope)(PgClient.make({ url: Redacted.make(url), maxConnections: 4 })).pipe(
      Effect.provide(Reactivity.layer)
    )
  )
  return { sql, close: () => Effect.runPromise(Scope.close(scope, Effect.void as never)) }
}

type Sql = PgClient.PgClient

/**
 * A write as a slow writer makes it: one transaction that takes its id at
 * once, writes a record and its change, and commits (or rolls back) only when
 * `release` resolves.
 */
const heldWrite = (sql: Sql, id: string, release: Promise<boolean>, taken: (xid: bigint) => void) =>
  Effect.runPromise(
    sql.withTransaction(Effect.gen(function*() {
      const [{ xid }] = yield* sql<{ xid: string }>`SELECT pg_current_xact_id()::text AS xid`
      taken(BigInt(xid))
      yield* sql`INSERT INTO records (tenant_id, id, stream, key, occurred_at, data)
        VALUES ('test', ${id}::uuid, 'held', ${`held-${id}`}, now(), '{"held":true}')`
      yield* sql`INSERT INTO changes (tenant_id, xid, n, record_id, stream)
        VALUES ('test', pg_current_xact_id(), 1, ${id}::uuid, 'held')`
      const commit = yield* Effect.promise(() => release)
      if (!commit) return yield* Effect.fail("rolled back on purpose" as const)
    })).pipe(Effect.catch(() => Effect.void))
  )

/** One sequential writer: singles and batches of 3 on `server`, each key's acknowledged ids in order. */
const writer = async (
  server: ServerProcess,
  name: string,
  acked: Map<string, Array<string>>,
  stop: () => boolean
) => {
  for (let i = 0; !stop(); i++) {
    const key = `${name}-k${i % 3}`
    const batch = i % 4 === 3
    const body = batch
      ? { records: [0, 1, 2].map((j) => ({ stream: `order-${name}`, key, data: { i, j } })) }
      : { stream: `order-${name}`, key, data: { i } }
    const res = await fetch(`${server.base}/data${batch ? "/batch" : ""}`, {
      method: "POST",
      headers: dataHeaders(server),
      body: JSON.stringify(body)
    })
    const answer = await res.json() as { id: string; records?: Array<{ id: string }> }
    if (res.status !== 201) throw new Error(`unexpected ${res.status}: ${JSON.stringify(answer)}`)
    const list = acked.get(key) ?? []
    for (const r of batch ? answer.records! : [answer]) list.push(r.id)
    acked.set(key, list)
  }
}

/** Reads the log as a naive reader would: after the last row seen, with no horizon. */
const naiveReader = async (sql: Sql, seen: Array<{ xid: bigint; id: string }>, stop: () => boolean) => {
  let last = { xid: 0n, n: 0 }
  while (!stop()) {
    const rows = await Effect.runPromise(sql<{ xid: string; n: number; id: string }>`
      SELECT xid::text AS xid, n, record_id::text AS id FROM changes
       WHERE tenant_id = 'test' AND (xid, n) > (${last.xid.toString()}::xid8, ${last.n})
       ORDER BY xid, n LIMIT 1000`)
    for (const row of rows) {
      seen.push({ xid: BigInt(row.xid), id: row.id })
      last = { xid: BigInt(row.xid), n: row.n }
    }
    await sleep(10)
  }
}

const metricValue = async (server: ServerProcess, name: string) => {
  const text = await (await fetch(`${server.base}/metrics`)).text()
  const line = text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
  return line === undefined ? undefined : Number(line.split(" ").at(-1))
}

describe.skipIf(!available)("change feed order with two server processes on PostgreSQL", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let a: ServerProcess
  let b: ServerProcess
  let client: Awaited<ReturnType<typeof sqlClient>>

  beforeAll(async () => {
    db = await freshDatabase()
    const env = { DATABASE_URL: db.url, FEED_POLL_INTERVAL: "50ms", FEED_HEARTBEAT: "1s", WRITE_BATCH_CONCURRENCY: "2" }
    a = await startServer(env)
    b = await startServer(env)
    client = await sqlClient(db.url)
  }, 60_000)

  afterAll(async () => {
    a?.child.kill("SIGKILL")
    b?.child.kill("SIGKILL")
    await client?.close()
    await db?.drop()
  })

  it(
    "delivers every acknowledged record exactly once, in each key's order, across held transactions, a rollback and a resume on the other process",
    async () => {
      const start = (await (await fetch(`${a.base}/changes?after=now`, { headers: dataHeaders(a) })).json()) as {
        nextPosition: string
      }
      const first = await openEventStream(`${a.base}/changes?after=${start.nextPosition}`, dataHeaders(a))
      expect(first.status).toBe(200)
      expect(first.headers.get("x-accel-buffering")).toBe("no")

      let stopped = false
      const stop = () => stopped
      const acked = new Map<string, Array<string>>()
      const naive: Array<{ xid: bigint; id: string }> = []
      const naiveDone = naiveReader(client.sql, naive, stop)
      const writers = Promise.all([
        writer(a, "a1", acked, stop),
        writer(a, "a2", acked, stop),
        writer(b, "b1", acked, stop),
        writer(b, "b2", acked, stop)
      ])

      // Three held writes: each takes its id, waits until the naive reader has passed a
      // later transaction, and then commits; a fourth is rolled back.
      const held: Array<string> = []
      let rolledBack = ""
      for (let round = 0; round < 4; round++) {
        const id = makeRecordId(Date.now())
        let release!: (commit: boolean) => void
        const released = new Promise<boolean>((resolve) => release = resolve)
        let xid = 0n
        const done = heldWrite(client.sql, id, released, (taken) => xid = taken)
        await eventually(() => xid > 0n && naive.some((row) => row.xid > xid), 10_000)
        await sleep(300)
        if (round === 1) {
          // While it is held, the feed's lag shows it.
          await eventually(async () => ((await metricValue(a, "strata_feed_lag_seconds")) ?? 0) > 0.2, 5000)
        }
        const commit = round !== 2
        release(commit)
        await done
        if (commit) held.push(id)
        else rolledBack = id
        if (round === 1) {
          // Halfway: the reader drops its connection and resumes on the other process.
          first.abort()
          await first.ended
        }
      }
      const records = (events: ReadonlyArray<{ event: string; data: string }>) =>
        events.filter((e) => e.event === "record").map((e) => JSON.parse(e.data) as { id: string; key: string })
      const lastId = first.events.filter((e) => e.event === "record").at(-1)?.id ?? start.nextPosition
      const second = await openEventStream(`${b.base}/changes?after=${start.nextPosition}`, {
        ...dataHeaders(b),
        "last-event-id": lastId
      })
      await sleep(500)
      stopped = true
      await writers
      await naiveDone

      const expected = new Set([...Array.from(acked.values()).flat(), ...held])
      const missing = () => {
        const seen = new Set([...records(first.events), ...records(second.events)].map((r) => r.id))
        return [...expected].filter((id) => !seen.has(id))
      }
      await eventually(() => missing().length === 0, 20_000).catch(() => {})
      expect(missing()).toEqual([])
      second.abort()
      await second.ended

      const got = [...records(first.events), ...records(second.events)]
      // Each exactly once (a resume from the last id repeats nothing), nothing invented.
      expect(got.length).toBe(new Set(got.map((r) => r.id)).size)
      expect(got.map((r) => r.id).filter((id) => !expected.has(id))).toEqual([])
      expect(got.map((r) => r.id)).not.toContain(rolledBack)
      // For each key, the order its sequential writer was acknowledged in.
      for (const [key, ids] of acked) {
        expect(got.filter((r) => r.key === key).map((r) => r.id)).toEqual(ids)
      }
      // The naive reader skipped the held writes: the case this test is about.
      const naiveIds = new Set(naive.map((row) => row.id))
      expect(held.filter((id) => !naiveIds.has(id)).length).toBeGreaterThan(0)
      // The lag falls back once nothing is held.
      await eventually(async () => ((await metricValue(a, "strata_feed_lag_seconds")) ?? 1) < 0.5, 5000)
      console.log(
        `feed order: ${got.length} records from ${acked.size} keys and ${held.length} held writes, ${first.events.length} + ${second.events.length} events; the naive reader missed ${
          held.filter((id) => !naiveIds.has(id)).length
        } of ${held.length} held`
      )
    },
    120_000
  )

  it(
    "moves past a rolled-back transaction at once: a transaction held then rolled back delays the feed only while it is held",
    async () => {
      const headers = dataHeaders(a)
      const before = await (await fetch(`${a.base}/changes?after=now`, { headers })).json() as { nextPosition: string }
      let release!: (commit: boolean) => void
      const released = new Promise<boolean>((resolve) => release = resolve)
      const done = heldWrite(client.sql, makeRecordId(Date.now()), released, () => {})
      await sleep(200)
      const written = await fetch(`${b.base}/data`, {
        method: "POST",
        headers: dataHeaders(b),
        body: JSON.stringify({ stream: "after-rollback", data: {} })
      })
      const { id } = await written.json() as { id: string }
      // Held: the later record is committed but below no horizon yet.
      const held = await (await fetch(`${a.base}/changes?after=${before.nextPosition}`, { headers })).json() as {
        changes: Array<{ id: string }>
      }
      expect(held.changes.map((c) => c.id)).not.toContain(id)
      const rolledBackAt = Date.now()
      release(false)
      await done
      const pageIds = async () =>
        ((await (await fetch(`${a.base}/changes?after=${before.nextPosition}`, { headers })).json()) as {
          changes: Array<{ id: string }>
        }).changes.map((c) => c.id)
      await eventually(async () => (await pageIds()).includes(id), 5000)
      expect(await pageIds()).toEqual([id])
      // The bound: the next read after the rollback; here, within a second.
      expect(Date.now() - rolledBackAt).toBeLessThan(1000)
    },
    30_000
  )

  it(
    "a read that sends a write's position waits for that position on the feed, even with an older transaction open",
    async () => {
      const before = await (await fetch(`${b.base}/changes?after=now`, { headers: dataHeaders(b) })).json() as {
        nextPosition: string
      }
      let release!: (commit: boolean) => void
      const released = new Promise<boolean>((resolve) => release = resolve)
      const heldId = makeRecordId(Date.now())
      const done = heldWrite(client.sql, heldId, released, () => {})
      await sleep(200)
      const written = await fetch(`${a.base}/data`, {
        method: "POST",
        headers: dataHeaders(a),
        body: JSON.stringify({ stream: "ryw", data: { n: randomUUID() } })
      })
      const position = written.headers.get("strata-position")!
      const { id } = await written.json() as { id: string }
      setTimeout(() => release(true), 500)
      const startedAt = Date.now()
      const page = await (await fetch(`${b.base}/changes?after=${before.nextPosition}`, {
        headers: dataHeaders(b, { "strata-position": position })
      })).json() as { changes: Array<{ id: string }> }
      await done
      expect(Date.now() - startedAt).toBeGreaterThan(300)
      expect(page.changes.map((c) => c.id)).toContain(id)
      expect(page.changes.map((c) => c.id)).toContain(heldId)
    },
    30_000
  )
})
