/**
 * Strata on a real six-node Redis Cluster (README: Cache, A Redis Cluster): three
 * primaries and three replicas of the suite's own (RedisCluster.ts). The record
 * cache and rate-limit suites also run on a cluster through `cacheBackends`;
 * here, what only a cluster shows:
 * - the slot of a key as the cluster computes it;
 * - batched reads and write-throughs whose keys span every primary;
 * - token buckets in different slots, and the rate-limit leases of two replicas
 *   sharing one bucket;
 * - a primary killed (SIGKILL) under read and write load on a real server
 *   process: its replica takes over, no request gets a 5xx, and the cache
 *   answers again through the new primary.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import {
  type ClusterNode,
  dataHeaders,
  eventually,
  freshDatabase,
  makeTestApp,
  pgDb,
  postgresAvailable,
  recordOf,
  type RedisCluster,
  redisClusterAvailable,
  type ServerProcess,
  sleep,
  startRedisCluster,
  startServer
} from "@strata/testing"
import { Duration, ManagedRuntime, Option } from "effect"
import { CacheStore } from "../src/platform/cache/CacheStore.ts"
import { keySlot } from "../src/platform/cache/KeySlot.ts"
import { recordCacheKey } from "../src/records/RecordCache.ts"

const available = await redisClusterAvailable()

/** The port of the primary serving `slot` in `nodes` (a view of the cluster). */
const servedBy = (nodes: ReadonlyArray<ClusterNode>, slot: number) => {
  for (const node of nodes) {
    if (node.role !== "primary" || node.failed) continue
    for (const range of node.slots) {
      const [from, to = from] = range.split("-").map(Number)
      if (slot >= from && slot <= to) return node.port
    }
  }
  return undefined
}

/** The primary serving `slot`, as the node at `port` sees it. */
const primaryOf = async (cluster: RedisCluster, slot: number, port?: number) =>
  servedBy(await cluster.nodes(port), slot)

describe.skipIf(!available)("CacheStore on a Redis Cluster", () => {
  let cluster: RedisCluster
  let runtime: ManagedRuntime.ManagedRuntime<CacheStore, never>
  const prefix = "strata-test:"
  beforeAll(async () => {
    cluster = await startRedisCluster()
    runtime = ManagedRuntime.make(CacheStore.layerRedis({ clusterNodes: cluster.seeds.split(","), prefix }))
  }, 60_000)
  afterAll(async () => {
    await runtime?.dispose()
    await cluster?.stop()
  })

  it("computes each key's slot as the cluster does (hash tags, non-ASCII keys)", async () => {
    const keys = [
      "foo",
      "123456789",
      `${prefix}${recordCacheKey("acme", "019a5f0e-7c4b-7d1e-9a2f-3c4d5e6f7a8b")}`,
      `${prefix}ratelimit:key-1`,
      "{user1000}.following",
      "{}.empty-tag",
      "a{}b{c}",
      "{x",
      "caf\u00e9 \u{1F600}"
    ]
    for (const key of keys) {
      expect(keySlot(key), key).toBe(Number(await cluster.cli(cluster.ports[0], "cluster", "keyslot", key)))
    }
  })

  it("writes through and reads back, in one call each, keys held by all three primaries", async () => {
    const entries = Array.from({ length: 300 }, (_, i) => ({
      key: `k${i}`,
      value: `{"i":${i},"s":"a \\"q\\"\\n\u00e9"}`,
      ttl: Duration.seconds(i % 2 === 0 ? 60 : 5)
    }))
    const nodes = await cluster.nodes()
    const primaries = new Set(entries.map((e) => servedBy(nodes, keySlot(prefix + e.key))))
    expect(primaries.size).toBe(3)
    await runtime.runPromise(CacheStore.use((c) => c.setMany(entries)))
    for (const e of [entries[0], entries[1], entries[299]]) {
      const port = servedBy(nodes, keySlot(prefix + e.key))!
      expect((await cluster.cli(port, "--no-raw", "pttl", prefix + e.key)).trim()).toMatch(/^\(integer\) \d+$/)
      const pttl = Number((await cluster.cli(port, "pttl", prefix + e.key)).trim())
      expect(pttl).toBeGreaterThan(Duration.toMillis(e.ttl) - 2_000)
      expect(pttl).toBeLessThanOrEqual(Duration.toMillis(e.ttl))
    }
    const keys = [...entries.map((e) => e.key), "absent-1", "absent-2"].toReversed()
    const read = await runtime.runPromise(CacheStore.use((c) => c.getMany(keys)))
    expect(read).toEqual(
      keys.map((key) => Option.fromNullishOr(entries.find((e) => e.key === key)?.value))
    )
  })

  it("keeps a token bucket per key, whichever slot each is in", async () => {
    const limit = { rps: 0.001, burst: 3 }
    const bucketKeys = Array.from({ length: 12 }, (_, i) => `ratelimit:${Date.now()}-${i}`)
    expect(new Set(bucketKeys.map((k) => keySlot(prefix + k))).size).toBeGreaterThan(1)
    for (const key of bucketKeys) {
      const first = await runtime.runPromise(CacheStore.use((c) => c.takeTokens(key, limit, 2)))
      const second = await runtime.runPromise(CacheStore.use((c) => c.takeTokens(key, limit, 2)))
      const third = await runtime.runPromise(CacheStore.use((c) => c.takeTokens(key, limit, 2)))
      expect([first.granted, second.granted, third.granted], key).toEqual([2, 1, 0])
    }
  })
})

describe.skipIf(!available)("rate limits of two replicas sharing a Redis Cluster", () => {
  it("hold across both within one lease each", async (ctx) => {
    if (!(await postgresAvailable())) return ctx.skip()
    const cluster = await startRedisCluster()
    const db = await freshDatabase()
    const store = () => CacheStore.layerRedis({ clusterNodes: cluster.seeds.split(","), prefix: "strata-test:" })
    const first = makeTestApp(pgDb(db.url), {}, store())
    const second = makeTestApp(pgDb(db.url), {}, store())
    try {
      const limit = { rps: 200, burst: 200 }
      const key = await first.createKey({ rateLimit: limit })
      const started = Date.now()
      const statuses: Array<number> = []
      for (let i = 0; i < 150; i++) {
        const [a, b] = await Promise.all([
          first.request("/data?stream=limited", {}, key),
          second.request("/data?stream=limited", {}, key)
        ])
        statuses.push(a.status, b.status)
      }
      const seconds = (Date.now() - started) / 1000
      const allowed = statuses.filter((s) => s === 200).length
      expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([])
      // The burst, what flowed in meanwhile, and at most one lease (10 tokens) per replica.
      expect(allowed).toBeLessThanOrEqual(limit.burst + Math.ceil(limit.rps * seconds) + 2 * 10)
      expect(allowed).toBeGreaterThanOrEqual(limit.burst)
      const metrics = await (await first.request("/metrics", {}, null)).text()
      // Decided on the shared bucket, not on the in-process fallback.
      expect(metrics).not.toMatch(/strata_rate_limit_decisions_total\{[^}]*where="local"[^}]*\} [1-9]/)
    } finally {
      await first.dispose()
      await second.dispose()
      await db.drop()
      await cluster.stop()
    }
  }, 90_000)
})

interface Answer {
  readonly status: number
  readonly cache: string | null
}

/** `clients` sequential clients reading `ids` round-robin and one writer, until `stop()`. */
const load = (server: ServerProcess, ids: ReadonlyArray<string>, clients: number) => {
  const state = { running: true }
  const answers: Array<Answer> = []
  const failures: Array<string> = []
  const client = async (f: (i: number) => Promise<Response>) => {
    for (let i = 0; state.running; i++) {
      try {
        const res = await f(i)
        await res.arrayBuffer()
        answers.push({ status: res.status, cache: res.headers.get("cache-status") })
      } catch (error) {
        failures.push(String(error))
      }
    }
  }
  const done = Promise.all([
    ...Array.from(
      { length: clients },
      (_, c) =>
        client((i) =>
          fetch(`${server.base}/data/${ids[(i * clients + c) % ids.length]}`, { headers: dataHeaders(server) })
        )
    ),
    client((i) =>
      fetch(`${server.base}/data`, {
        method: "POST",
        headers: dataHeaders(server),
        body: JSON.stringify({ stream: "failover", key: `k${i % 5}`, data: { i } })
      })
    )
  ])
  return {
    answers,
    stop: async () => {
      state.running = false
      await done
      return { answers, failures }
    }
  }
}

describe.skipIf(!available)("a Redis Cluster primary killed under load", () => {
  let cluster: RedisCluster
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let server: ServerProcess
  let pgUp = false
  beforeAll(async () => {
    pgUp = await postgresAvailable()
    if (!pgUp) return
    ;[cluster, db] = await Promise.all([startRedisCluster(), freshDatabase()])
    server = await startServer({
      DATABASE_URL: db.url,
      REDIS_CLUSTER_NODES: cluster.seeds,
      // Every read past the in-process level: each one is a Redis read.
      RECORD_CACHE_BYTES: "0"
    })
  }, 90_000)
  afterAll(async () => {
    server?.child.kill("SIGKILL")
    await server?.exited
    await cluster?.stop()
    await db?.drop()
  })

  it("fails over to its replica; no request gets a 5xx and the cache answers through the new primary", async (ctx) => {
    if (!pgUp) return ctx.skip()
    const ids: Array<string> = []
    for (let i = 0; i < 60; i++) {
      const res = await fetch(`${server.base}/data`, {
        method: "POST",
        headers: dataHeaders(server),
        body: JSON.stringify({ stream: "failover", data: { i } })
      })
      ids.push((await recordOf(res)).id)
    }
    const cacheStatus = async (id: string) =>
      (await fetch(`${server.base}/data/${id}`, { headers: dataHeaders(server) })).headers.get("cache-status")
    // Written through to Redis in the background.
    await eventually(async () => (await Promise.all(ids.map(cacheStatus))).every((s) => s === "strata; hit"), 10_000)

    // The victim: the primary holding the first record's key; its records and its replica.
    const slotOf = (id: string) => keySlot(`strata:${recordCacheKey("test", id)}`)
    const victim = (await primaryOf(cluster, slotOf(ids[0])))!
    const before = await cluster.nodes()
    const victimId = before.find((n) => n.port === victim)!.id
    const replica = before.find((n) => n.primaryId === victimId)!.port
    const onVictim = ids.filter((id) => servedBy(before, slotOf(id)) === victim)
    expect(onVictim.length).toBeGreaterThan(0)

    const running = load(server, ids, 4)
    await sleep(1_000)
    const killedAt = Date.now()
    cluster.kill(victim)
    // The replica is promoted and serves the victim's slots.
    await eventually(async () => (await primaryOf(cluster, slotOf(ids[0]), replica)) === replica, 30_000, 100)
    const failoverMs = Date.now() - killedAt
    await cluster.awaitOk()
    await sleep(3_000) // load goes on through the new primary
    const { answers, failures } = await running.stop()

    const tally = (of: (a: Answer) => unknown) =>
      JSON.stringify(Object.fromEntries([...Map.groupBy(answers, of)].map(([k, list]) => [k, list.length])))
    console.log(
      `Redis Cluster failover: replica promoted ${failoverMs} ms after SIGKILL; ${answers.length} requests, ` +
        `statuses ${tally((a) => a.status)}, Cache-Status of the reads ${tally((a) => a.cache ?? "write")}`
    )
    expect(failures).toEqual([])
    expect(answers.filter((a) => a.status >= 500)).toEqual([])
    expect(answers.filter((a) => a.status !== 200 && a.status !== 201)).toEqual([])
    expect(server.child.exitCode).toBeNull()
    // The victim's records are cached hits again, read from the promoted replica.
    await eventually(
      async () => (await Promise.all(onVictim.map(cacheStatus))).every((s) => s === "strata; hit"),
      15_000,
      200
    )

    // The killed node comes back as a replica of the one that replaced it.
    await cluster.restart(victim)
    await eventually(
      async () => {
        const node = (await cluster.nodes(victim)).find((n) => n.port === victim)
        return node?.role === "replica"
      },
      30_000,
      200
    )
    await cluster.awaitOk()
  }, 120_000)
})
