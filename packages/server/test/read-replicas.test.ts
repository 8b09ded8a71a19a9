/**
 * Read replicas (README: Read replicas), on a PostgreSQL primary with a
 * streaming replica of the suite's own (ReplicatedPostgres.ts) and real server
 * processes. No shared cache and no in-process answers, so every read asks the
 * database; `strata_db_reads_total{node}` says which node answered.
 * - reads by id, pages, exports and feed pages are served by the replica;
 * - read your writes: 1,000 write → read pairs against a replica 2 s late, with
 *   the write's position, see every write (and without it, some do not: the
 *   test can tell);
 * - past REPLICA_MAX_LAG, reads without a position go to the primary;
 * - a replica stopped: reads keep working, readiness says degraded, and it
 *   comes back into rotation when started again;
 * - the primary dies and the replica is promoted: positions from before are
 *   recognised and no read hangs.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import {
  dataHeaders,
  eventually,
  parsePrometheusText,
  type ReplicatedPostgres,
  replicationAvailable,
  type ServerProcess,
  sleep,
  startReplicatedPostgres,
  startServer
} from "@strata/testing"

const available = replicationAvailable()

/** Neither Redis nor the in-process levels: every read is a database read. */
const NO_CACHE = { RECORD_CACHE_BYTES: "0", CACHE_MAX_ENTRIES: "1", REDIS_URL: undefined }

const served = async (server: ServerProcess) => {
  const text = await fetch(`${server.base}/metrics`).then((r) => r.text())
  const metrics = parsePrometheusText(text)
  return {
    replica: metrics.sum("strata_db_reads_total", { node: "replica-1" }),
    primary: metrics.sum("strata_db_reads_total", { node: "primary" }),
    lagSeconds: metrics.sum("strata_replica_lag_seconds", { replica: "replica-1" }),
    inRotation: metrics.sum("strata_replica_in_rotation", { replica: "replica-1" })
  }
}

const readiness = async (server: ServerProcess) =>
  (await fetch(`${server.base}/health/ready`).then((r) => r.json())) as {
    status: string
    dependencies: Record<string, string>
  }

const write = async (server: ServerProcess, stream: string, key: string, n = 0) => {
  const response = await fetch(`${server.base}/data`, {
    method: "POST",
    headers: dataHeaders(server),
    body: JSON.stringify({ stream, key, data: { n } })
  })
  expect(response.status).toBe(201)
  const body = (await response.json()) as { id: string }
  return { id: body.id, position: response.headers.get("strata-position")! }
}

const get = (server: ServerProcess, path: string, headers: Record<string, string> = {}) =>
  fetch(`${server.base}${path}`, { headers: dataHeaders(server, headers), signal: AbortSignal.timeout(30_000) })

describe.skipIf(!available)("read replicas", () => {
  let pg: ReplicatedPostgres
  let server: ServerProcess
  beforeAll(async () => {
    pg = await startReplicatedPostgres()
    server = await startServer({
      DATABASE_URL: pg.primaryUrl,
      DATABASE_READ_URL: pg.replicaUrl,
      REPLICA_MAX_LAG: "10s",
      ...NO_CACHE
    })
  }, 120_000)
  afterAll(async () => {
    server?.child.kill("SIGKILL")
    await pg?.stop()
  })

  it("serves reads by id, pages, exports and feed pages from the replica", async () => {
    const written = []
    for (let i = 0; i < 120; i++) written.push(await write(server, "served", `k${i % 3}`, i))
    await pg.caughtUp()
    await eventually(async () => (await served(server)).inRotation === 1, 10_000)
    const before = await served(server)
    for (const { id } of written.slice(0, 50)) expect((await get(server, `/data/${id}`)).status).toBe(200)
    // A full page (more records follow) from the replica; the export's full pages too.
    const page = (await (await get(server, "/data?stream=served&limit=100")).json()) as { nextCursor: string | null }
    expect(page.nextCursor).not.toBeNull()
    const exported = await (await get(server, "/data?stream=served", { accept: "application/x-ndjson" })).text()
    expect(exported.trim().split("\n")).toHaveLength(120)
    const feed = await get(server, "/streams/served/changes?limit=50")
    expect(feed.status).toBe(200)
    const after = await served(server)
    // 50 reads by id, the page, the export's head, the feed page.
    expect(after.replica - before.replica).toBeGreaterThanOrEqual(53)
    // The export's one page is its last (short): read on the primary, where absence is confirmed.
    expect(after.primary - before.primary).toBeGreaterThanOrEqual(1)
    expect(await readiness(server)).toMatchObject({ status: "up", dependencies: { replicas: "up" } })
  })

  it("reads your writes with the position, against a replica 2 s late: 1,000 pairs, none stale", async () => {
    // Ten keys with records already, so the newest-first page of a key is full
    // (20 of them, 5 a page) and only the position can make it show the new one.
    const keys = Array.from({ length: 10 }, (_, i) => `rw-${i}`)
    for (const key of keys) for (let i = 0; i < 20; i++) await write(server, "rw", key, i)
    await pg.caughtUp()
    await pg.setApplyDelay("2s")
    try {
      const pairs = async (withPosition: boolean, count: number) => {
        let stale = 0
        await Promise.all(keys.map(async (key) => {
          for (let i = 0; i < count / keys.length; i++) {
            const { id, position } = await write(server, "rw", key, i)
            const headers: Record<string, string> = withPosition ? { "strata-position": position } : {}
            const [byId, page] = await Promise.all([
              get(server, `/data/${id}`, headers),
              get(server, `/data?stream=rw&key=${key}&limit=5`, headers).then((r) =>
                r.json() as Promise<{ records: Array<{ id: string }> }>
              )
            ])
            if (byId.status !== 200 || page.records[0]?.id !== id) stale++
          }
        }))
        return stale
      }
      const before = await served(server)
      expect(await pairs(true, 1000)).toBe(0)
      const after = await served(server)
      // The replica was 2 s late: the pages with a position went to the primary after
      // REPLICA_WAIT. Most of them: on a loaded machine a pair can take long enough for
      // the replica to have caught up, and then it answers (none stale, as checked).
      expect(after.primary - before.primary).toBeGreaterThanOrEqual(500)
      // Without the position the same pairs read the late replica (within REPLICA_MAX_LAG): some are stale.
      expect(await pairs(false, 100)).toBeGreaterThan(0)
    } finally {
      await pg.setApplyDelay("0")
    }
    await pg.caughtUp()
    // Not late: the replica answers the same pairs itself, after a short wait for its replay.
    const before = await served(server)
    let stale = 0
    for (let i = 0; i < 100; i++) {
      const key = keys[i % keys.length]
      const { id, position } = await write(server, "rw", key, i)
      const page = (await (await get(server, `/data?stream=rw&key=${key}&limit=5`, { "strata-position": position }))
        .json()) as { records: Array<{ id: string }> }
      if (page.records[0]?.id !== id) stale++
    }
    expect(stale).toBe(0)
    expect((await served(server)).replica - before.replica).toBeGreaterThan(50)
  }, 180_000)

  it("sends reads without a position to the primary while the replica lags past REPLICA_MAX_LAG", async () => {
    const strict = await startServer({
      DATABASE_URL: pg.primaryUrl,
      DATABASE_READ_URL: pg.replicaUrl,
      REPLICA_MAX_LAG: "500ms",
      ...NO_CACHE
    })
    try {
      for (let i = 0; i < 10; i++) await write(strict, "lag", "k", i)
      await pg.caughtUp()
      await eventually(async () => (await served(strict)).inRotation === 1, 10_000)
      await pg.setApplyDelay("3s")
      // Writes keep the primary ahead while the replica waits out its delay.
      const writing = new AbortController()
      const writer = (async () => {
        while (!writing.signal.aborted) {
          await write(strict, "lag", "k")
          await sleep(50)
        }
      })()
      try {
        await eventually(async () => (await served(strict)).inRotation === 0, 10_000)
        const before = await served(strict)
        expect(before.lagSeconds).toBeGreaterThan(0.5)
        // Full pages (not the last): a replica within REPLICA_MAX_LAG would answer them.
        for (let i = 0; i < 20; i++) expect((await get(strict, "/data?stream=lag&key=k&limit=5")).status).toBe(200)
        const after = await served(strict)
        expect(after.replica).toBe(before.replica)
        expect(after.primary - before.primary).toBeGreaterThanOrEqual(20)
        expect(await readiness(strict)).toMatchObject({ status: "degraded", dependencies: { replicas: "degraded" } })
      } finally {
        writing.abort()
        await writer
        await pg.setApplyDelay("0")
      }
      await pg.caughtUp()
      await eventually(async () => (await served(strict)).inRotation === 1, 10_000)
    } finally {
      strict.child.kill("SIGKILL")
    }
  }, 60_000)

  it("keeps reading while the replica is stopped, and takes it back when it returns", async () => {
    const ids = []
    for (let i = 0; i < 20; i++) ids.push((await write(server, "down", "k", i)).id)
    await pg.stopReplica()
    try {
      for (const id of ids) expect((await get(server, `/data/${id}`)).status).toBe(200)
      expect((await get(server, "/data?stream=down&limit=5")).status).toBe(200)
      await eventually(async () => (await readiness(server)).dependencies.replicas === "degraded", 10_000)
      expect(await readiness(server)).toMatchObject({ status: "degraded", dependencies: { replicas: "degraded" } })
    } finally {
      await pg.startReplica()
    }
    await eventually(async () => (await served(server)).inRotation === 1, 30_000)
    const before = await served(server)
    for (const id of ids) expect((await get(server, `/data/${id}`)).status).toBe(200)
    expect((await served(server)).replica - before.replica).toBe(ids.length)
  }, 60_000)

  // Last: it leaves no primary behind.
  it("recognises positions from before a failover, and no read hangs", async () => {
    const { id, position } = await write(server, "failover", "k")
    await pg.caughtUp()
    await pg.killPrimary()
    await pg.promoteReplica()
    // The old process: its primary is gone and its replica is one no longer. Reads answer (503 or 200), in time.
    for (const path of [`/data/${id}`, "/data?stream=failover"]) {
      const started = Date.now()
      const response = await get(server, path, { "strata-position": position })
      expect([200, 503]).toContain(response.status)
      expect(Date.now() - started).toBeLessThan(20_000)
    }
    // A process on the promoted node (its new primary): the position from before is of another
    // epoch, and a read with it is served from the primary, not refused.
    const promoted = await startServer({ DATABASE_URL: pg.replicaUrl, ...NO_CACHE })
    try {
      const byId = await get(promoted, `/data/${id}`, { "strata-position": position })
      expect(byId.status).toBe(200)
      const page = (await (await get(promoted, "/data?stream=failover", { "strata-position": position })).json()) as {
        records: Array<{ id: string }>
      }
      expect(page.records.map((r) => r.id)).toEqual([id])
      // The feed cannot trust it to name the same changes here: 410, with where to go on.
      const feed = await get(promoted, `/streams/failover/changes?after=${encodeURIComponent(position)}`)
      expect(feed.status).toBe(410)
    } finally {
      promoted.child.kill("SIGKILL")
    }
  }, 120_000)
})
