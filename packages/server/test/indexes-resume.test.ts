/**
 * README: Declared indexes — a build cut short goes on by itself, and processes
 * sharing a database build one at a time. Real server processes on PostgreSQL:
 * one is killed (`kill -9`) mid-build, and the next one started finishes the
 * index without anyone declaring it again; two started together on an index
 * left `building` build it once between them.
 *
 * The build is held at a chosen partition by a transaction of the test that
 * holds a lock on it (`CREATE INDEX CONCURRENTLY` waits for writers to end
 * first), so "mid-build" is a known place rather than a race.
 */
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import {
  API_KEY,
  dataHeaders,
  eventually,
  freshDatabase,
  makeTestApp,
  pgDb,
  postgresAvailable,
  type ServerProcess,
  sleep,
  startServer,
  strata
} from "@strata/testing"
import { Effect, Exit, Redacted, Scope } from "effect"
import { Reactivity } from "effect/reactivity"
import { BUILDER_LOCK, indexName } from "../src/schemas/StreamIndexes.ts"

/** One session of its own on `url` (a transaction the test keeps open spans calls). */
const connect = async (url: string) => {
  const scope = Effect.runSync(Scope.make())
  const sql = await Effect.runPromise(
    Scope.provide(scope)(PgClient.makeClient({ url: Redacted.make(url) })).pipe(Effect.provide(Reactivity.layer))
  )
  return {
    query: <A extends object = Record<string, any>>(text: string, params: ReadonlyArray<unknown> = []) =>
      Effect.runPromise(sql.unsafe<A>(text, params as Array<unknown>)),
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
type Session = Awaited<ReturnType<typeof connect>>

const STREAM = "resumed"
const NAME = indexName("test", STREAM, { path: ["customer"], kind: "btree" })

/** 300 records over three months (so over three partitions), through `server`. */
const storeSpread = async (server: ServerProcess) => {
  const records = Array.from({ length: 300 }, (_, i) => ({
    stream: STREAM,
    occurredAt: new Date(Date.UTC(2026, 8 + (i % 3), 1 + (i % 27))).toISOString(),
    data: { customer: i % 50 }
  }))
  const res = await fetch(`${server.base}/data/batch`, {
    method: "POST",
    headers: dataHeaders(server),
    body: JSON.stringify({ records })
  })
  expect(res.status).toBe(201)
}

/** The partitions of `records` in the order a build takes them. */
const partitionsOf = async (db: Session) =>
  (await db.query<{ relname: string }>(
    `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'records'::regclass ORDER BY c.relname DESC`
  )).map((r) => r.relname)

/** A transaction that holds a writer's lock on `partition`: a build waits there until it ends. */
const hold = async (url: string, partition: string) => {
  const blocker = await connect(url)
  await blocker.query("BEGIN")
  await blocker.query(`LOCK TABLE "${partition}" IN ROW EXCLUSIVE MODE`)
  return { release: async () => (await blocker.query("ROLLBACK"), await blocker.close()) }
}

/** The CREATE INDEX statements running in the database: their backend and table. */
const creating = (db: Session) =>
  db.query<{ pid: number; relname: string }>(
    `SELECT p.pid, c.relname FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.relid
     WHERE p.datid = (SELECT oid FROM pg_database WHERE datname = current_database())`
  )

/** The declared index's row. */
const row = async (db: Session) =>
  (await db.query<{ state: string; built: number; partitions: number }>(
    "SELECT state, built, partitions FROM stream_indexes WHERE name = $1",
    [NAME]
  ))[0]

/** Every index on each partition made for NAME (by its name), with whether it is valid, and the parent's validity. */
const childIndexes = async (db: Session) => {
  const children = await db.query<{ partition: string; index: string; valid: boolean; oid: number }>(
    `SELECT t.relname AS partition, i.relname AS index, x.indisvalid AS valid, i.oid::int AS oid
     FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
     WHERE i.relname LIKE $1 ORDER BY t.relname DESC`,
    [`${NAME}\\_%`]
  )
  const [parent] = await db.query<{ valid: boolean }>(
    "SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass($1)",
    [NAME]
  )
  return { children, parentValid: parent?.valid }
}

/** How many sessions hold the builders' advisory lock. */
const lockHolders = async (db: Session) =>
  (await db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = " +
      "(SELECT oid FROM pg_database WHERE datname = current_database())"
  ))[0].n

const stop = async (server: ServerProcess) => {
  if (server.child.exitCode === null && server.child.signalCode === null) {
    server.child.kill("SIGTERM")
    await server.exited
  }
}

/** Every partition has exactly one index of NAME, valid, and so is the parent; the row is `ready`, all built. */
const expectBuilt = async (db: Session) => {
  const partitions = await partitionsOf(db)
  const { children, parentValid } = await childIndexes(db)
  expect(children.map((c) => c.partition)).toEqual(partitions)
  expect(children.every((c) => c.valid)).toBe(true)
  expect(parentValid).toBe(true)
  expect(await row(db)).toEqual({ state: "ready", built: partitions.length, partitions: partitions.length })
  return children
}

/**
 * A server on a fresh database declares the index and is killed with SIGKILL once
 * the first partition is built and the second's CREATE INDEX CONCURRENTLY waits on
 * the test's lock (`held`), which the test still holds.
 */
const killedMidBuild = async (
  database: { readonly url: string },
  servers: Array<ServerProcess>,
  sessions: Array<Session>
) => {
  const env = { DATABASE_URL: database.url, SHUTDOWN_DELAY: "0s" }
  const first = await startServer(env)
  servers.push(first)
  await storeSpread(first)
  const registrar = (await strata(
    ["keys", "create", "--tenant", "test", "--scopes", "schemas:write,records:read"],
    env
  )).stdout.match(API_KEY)![0]
  const db = await connect(database.url)
  sessions.push(db)
  const partitions = await partitionsOf(db)
  expect(partitions.length).toBeGreaterThanOrEqual(4)
  const held = await hold(database.url, partitions[1])
  const declared = await fetch(`${first.base}/streams/${STREAM}/indexes`, {
    method: "PUT",
    headers: { "content-type": "application/json", authorization: `Bearer ${registrar}` },
    body: JSON.stringify({ indexes: [{ path: "customer" }] })
  })
  expect(declared.status).toBe(200)
  await eventually(async () => (await creating(db)).some((c) => c.relname === partitions[1]), 20_000, 50)
  expect(await row(db)).toMatchObject({ state: "building", built: 1 })
  first.child.kill("SIGKILL")
  await first.exited
  return { env, db, partitions, held, registrar }
}

describe.skipIf(!(await postgresAvailable()))("declared index builds across processes", () => {
  it("a build cut by kill -9 is finished by the next process, without declaring again", async () => {
    const database = await freshDatabase()
    const servers: Array<ServerProcess> = []
    const sessions: Array<Session> = []
    try {
      const { db, env, held, partitions, registrar } = await killedMidBuild(database, servers, sessions)
      // The dead process's statement goes on in its backend; end it, as a cut would
      // (a restart of the database, a cancel): it leaves an invalid index behind.
      await db.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_progress_create_index WHERE datid = " +
          "(SELECT oid FROM pg_database WHERE datname = current_database())"
      )
      await eventually(async () => (await creating(db)).length === 0, 10_000, 50)
      await held.release()
      const cut = await childIndexes(db)
      expect(cut.children.find((c) => c.partition === partitions[1])).toMatchObject({ valid: false })
      expect(cut.parentValid).toBe(false)
      expect(await row(db)).toMatchObject({ state: "building", built: 1 })

      // A new process, and nobody declares anything: the index gets finished.
      const started = Date.now()
      const second = await startServer(env)
      servers.push(second)
      await eventually(async () => (await row(db))?.state !== "building", 30_000, 100)
      console.log(`resumed and finished ${Date.now() - started} ms after the second process was started`)
      const children = await expectBuilt(db)
      // The first partition's index was kept; the invalid one was made again.
      expect(children.find((c) => c.partition === partitions[0])!.oid).toBe(
        cut.children.find((c) => c.partition === partitions[0])!.oid
      )
      expect(children.find((c) => c.partition === partitions[1])!.oid).not.toBe(
        cut.children.find((c) => c.partition === partitions[1])!.oid
      )
      const listed = await (await fetch(`${second.base}/streams/${STREAM}/indexes`, {
        headers: { authorization: `Bearer ${registrar}` }
      })).json() as { indexes: ReadonlyArray<unknown> }
      expect(listed.indexes).toMatchObject([{ path: "customer", state: "ready" }])
      expect(second.output()).not.toMatch(/declared ind/i)
      await eventually(async () => (await lockHolders(db)) === 0, 5_000, 50)
    } finally {
      for (const server of servers) await stop(server)
      for (const session of sessions) await session.close()
      await database.drop()
    }
  }, 120_000)

  it("the killed process's CREATE INDEX still running: the next process waits for it and keeps its index", async () => {
    const database = await freshDatabase()
    const servers: Array<ServerProcess> = []
    const sessions: Array<Session> = []
    try {
      const { db, env, held, partitions } = await killedMidBuild(database, servers, sessions)
      const second = await startServer(env)
      servers.push(second)
      // It takes the lock (the dead process's went with its session) and waits:
      // the orphan statement is the only CREATE INDEX running.
      await eventually(async () => (await lockHolders(db)) === 1, 10_000, 50)
      await sleep(1_000)
      expect((await creating(db)).map((c) => c.relname)).toEqual([partitions[1]])
      const orphan = (await childIndexes(db)).children.find((c) => c.partition === partitions[1])!
      expect(orphan.valid).toBe(false)

      await held.release()
      await eventually(async () => (await row(db))?.state !== "building", 30_000, 100)
      const children = await expectBuilt(db)
      expect(children.find((c) => c.partition === partitions[1])!.oid).toBe(orphan.oid)
      expect(second.output()).not.toMatch(/declared ind/i)
    } finally {
      for (const server of servers) await stop(server)
      for (const session of sessions) await session.close()
      await database.drop()
    }
  }, 120_000)

  it("two processes started together on an index left building build it once", async () => {
    const database = await freshDatabase()
    const env = { DATABASE_URL: database.url, SHUTDOWN_DELAY: "0s" }
    const servers: Array<ServerProcess> = []
    const sessions: Array<Session> = []
    try {
      // A database with the stream's records, and an index declared but not built.
      const seeder = await startServer(env)
      servers.push(seeder)
      await storeSpread(seeder)
      await stop(seeder)
      const db = await connect(database.url)
      sessions.push(db)
      await db.query(
        `INSERT INTO stream_indexes (tenant_id, stream, path, kind, name, state)
         VALUES ('test', $1, '{customer}', 'btree', $2, 'building')`,
        [STREAM, NAME]
      )
      const partitions = await partitionsOf(db)
      const held = await hold(database.url, partitions[1])

      const [one, two] = await Promise.all([startServer(env), startServer(env)])
      servers.push(one, two)
      // One of them builds, up to the held partition; the other leaves it alone.
      await eventually(async () => (await creating(db)).some((c) => c.relname === partitions[1]), 20_000, 50)
      await sleep(1_000)
      const building = await creating(db)
      expect(building).toHaveLength(1)
      expect(await lockHolders(db)).toBe(1)
      const first = (await childIndexes(db)).children.find((c) => c.partition === partitions[0])!
      expect(first.valid).toBe(true)

      await held.release()
      await eventually(async () => (await row(db))?.state !== "building", 30_000, 100)
      const children = await expectBuilt(db)
      // The first partition's index is the one made before the wait: nothing was made twice.
      expect(children.find((c) => c.partition === partitions[0])!.oid).toBe(first.oid)
      for (const server of [one, two]) {
        expect(server.child.exitCode).toBeNull()
        expect(server.output()).not.toMatch(/declared ind/i)
      }
    } finally {
      for (const server of servers) await stop(server)
      for (const session of sessions) await session.close()
      await database.drop()
    }
  }, 120_000)

  it(
    "a process that finds the builders' lock taken leaves the index alone, and builds it once the lock is free",
    async () => {
      const database = await freshDatabase()
      const app = makeTestApp(pgDb(database.url))
      const sessions: Array<Session> = []
      try {
        const db = await connect(database.url)
        sessions.push(db)
        // Another process building: the test's session holds the lock.
        const other = await connect(database.url)
        sessions.push(other)
        await other.query("SELECT pg_advisory_lock(hashtextextended($1, 0))", [BUILDER_LOCK])
        const registrar = await app.createKey({ scopes: ["schemas:write", "records:read"] })
        const res = await app.json(`/streams/${STREAM}/indexes`, { indexes: [{ path: "customer" }] }, {
          method: "PUT"
        }, registrar)
        expect(res.status).toBe(200)
        await sleep(1_500)
        expect(await row(db)).toMatchObject({ state: "building", built: 0 })
        expect(await creating(db)).toEqual([])
        expect((await childIndexes(db)).parentValid).toBeUndefined()

        // The holder goes away: the next look (every 15 s) builds it.
        await other.close()
        sessions.pop()
        const freed = Date.now()
        await eventually(async () => (await row(db))?.state !== "building", 30_000, 100)
        console.log(`built ${Date.now() - freed} ms after the lock was freed`)
        await expectBuilt(db)
      } finally {
        await app.dispose()
        for (const session of sessions) await session.close()
        await database.drop()
      }
    },
    60_000
  )
})
