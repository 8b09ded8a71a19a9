/**
 * README: Resilience: no acknowledged record and no event is lost, even on `kill -9`.
 * A client writes steadily (single and batch POSTs) to the real server, noting
 * every id answered 201; the server is killed mid-stream with SIGKILL and
 * started again on the same database: every noted id must be readable, and
 * its event must be in the outbox.
 *
 * The first server's relay makes its one pass at startup (OUTBOX_POLL_INTERVAL
 * is an hour), so it publishes and deletes nothing while the writers run:
 * every committed event is still in the outbox after the crash, where the
 * test counts it before restarting. (A published event leaves the outbox for
 * the in-memory bus, which dies with the process: "published" and "lost"
 * could not be told apart.)
 */
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { PGlite } from "@electric-sql/pglite"
import { dataHeaders, freshDatabase, postgresAvailable, type ServerProcess, startServer } from "@strata/testing"
import { Effect, Redacted } from "effect"
import { Reactivity } from "effect/reactivity"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

/**
 * One writer: alternates single and 5-record batch POSTs until a request gets
 * no answer (the server died). A 201 adds its ids to `acknowledged`; any other status fails the test.
 */
const writer = async (server: ServerProcess, acknowledged: Set<string>, n: number, stop: () => boolean) => {
  for (let i = 0; !stop(); i++) {
    const batch = i % 2 === 1
    const one = (j: number) => ({ stream: `crash-${n}`, key: `k${j % 3}`, data: { writer: n, i, j } })
    const body = batch ? { records: Array.from({ length: 5 }, (_, j) => one(j)) } : one(0)
    let res: Response
    try {
      res = await fetch(`${server.base}/data${batch ? "/batch" : ""}`, {
        method: "POST",
        headers: dataHeaders(server),
        body: JSON.stringify(body)
      })
    } catch {
      return
    }
    let answer: any
    try {
      answer = await res.json()
    } catch {
      // the connection died while the answer was on its way: not acknowledged
      return
    }
    if (res.status !== 201) throw new Error(`unexpected ${res.status}: ${JSON.stringify(answer)}`)
    for (const record of batch ? answer.records : [answer]) acknowledged.add(record.id)
  }
}

/** What the database holds: the record id of each outbox event, and the number of records. */
type OutboxCheck = () => Promise<{ readonly outboxIds: ReadonlyArray<string>; readonly recordCount: number }>

const pgOutbox = (url: string): OutboxCheck => () =>
  Effect.runPromise(
    Effect.scoped(Effect.flatMap(
      PgClient.make({ url: Redacted.make(url), maxConnections: 1 }),
      (sql) =>
        Effect.gen(function*() {
          const events = yield* sql<{ readonly id: string }>`SELECT record_id::text AS id FROM outbox`
          const [records] = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM records`
          return { outboxIds: events.map((e) => e.id), recordCount: records.n }
        })
    )).pipe(Effect.provide(Reactivity.layer))
  )

/** The embedded database, opened by the test once no server holds it. */
const pgliteOutbox = (dataDir: string): OutboxCheck => async () => {
  const db = await PGlite.create(dataDir)
  try {
    const events = await db.query<{ id: string }>("SELECT record_id::text AS id FROM outbox")
    const records = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM records")
    return { outboxIds: events.rows.map((e) => e.id), recordCount: records.rows[0]!.n }
  } finally {
    await db.close()
  }
}

/**
 * Writes until `kill -9`, checks the database as the crash left it, then
 * restarts the server on it and reads every acknowledged id back.
 */
const killAndRestart = async (env: Record<string, string>, outbox: OutboxCheck) => {
  let server: ServerProcess | undefined
  try {
    server = await startServer(env)
    const acknowledged = new Set<string>()
    const first = server
    // Kill as soon as enough writes were acknowledged, while the writers are still busy.
    const KILL_AFTER = 300
    let killed = false
    const stop = () => {
      if (!killed && acknowledged.size >= KILL_AFTER) {
        killed = true
        first.child.kill("SIGKILL")
      }
      return false
    }
    await Promise.all(Array.from({ length: 8 }, (_, n) => writer(first, acknowledged, n, stop)))
    const [, signal] = await first.exited
    expect(signal).toBe("SIGKILL")
    expect(acknowledged.size).toBeGreaterThanOrEqual(KILL_AFTER)
    const ids = [...acknowledged]

    const { outboxIds, recordCount } = await outbox()
    const inOutbox = new Set(outboxIds)
    expect(ids.filter((id) => !inOutbox.has(id))).toEqual([])
    // Exactly one event per stored record, also for writes committed but never answered.
    expect(outboxIds).toHaveLength(inOutbox.size)
    expect(inOutbox.size).toBe(recordCount)

    server = await startServer(env)
    const second = server
    const missing: Array<string> = []
    for (let i = 0; i < ids.length; i += 20) {
      await Promise.all(
        ids.slice(i, i + 20).map(async (id) => {
          const res = await fetch(`${second.base}/data/${id}`, { headers: dataHeaders(second) })
          if (res.status !== 200) missing.push(`${id}: ${res.status}`)
          await res.body?.cancel()
        })
      )
    }
    expect(missing).toEqual([])
  } finally {
    server?.child.kill("SIGKILL")
    await server?.exited
  }
}

describe("after kill -9", () => {
  it("on PostgreSQL, every acknowledged record is readable and its event is in the outbox", async (ctx) => {
    if (!(await postgresAvailable())) return ctx.skip()
    const db = await freshDatabase()
    try {
      await killAndRestart(
        { DATABASE_URL: db.url, OUTBOX_POLL_INTERVAL: "1h" },
        pgOutbox(db.url)
      )
    } finally {
      await db.drop()
    }
  }, 120_000)

  it("on the embedded PGlite, every acknowledged record is readable and its event is in the outbox", async () => {
    const dir = mkdtempSync(join(tmpdir(), "strata-crash-"))
    try {
      await killAndRestart(
        { DATA_DIR: dir, OUTBOX_POLL_INTERVAL: "1h" },
        pgliteOutbox(dir)
      )
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)
})
