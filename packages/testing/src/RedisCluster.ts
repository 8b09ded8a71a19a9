/**
 * A Redis Cluster of a suite's own: six `redis-server --cluster-enabled yes`
 * processes on free ports of 127.0.0.1 (three primaries, three replicas, made
 * with `redis-cli --cluster create`), their files in a temp directory, nothing
 * persisted. `cluster-node-timeout` is short (1 s by default), so a killed
 * primary's replica takes over within a few seconds. Without redis-server the
 * suite is skipped locally and fails under CI=true (Services.ts).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freePort } from "./Network.ts"
import { unavailable } from "./Services.ts"
import { sleep } from "./Waiting.ts"

/** One node as `CLUSTER NODES` lists it. */
export interface ClusterNode {
  readonly id: string
  readonly port: number
  readonly role: "primary" | "replica"
  /** The node id of its primary, for a replica. */
  readonly primaryId: string | undefined
  /** Failed or unreachable as this view has it (`fail`, `fail?`, `noaddr`). */
  readonly failed: boolean
  /** Slot ranges it serves, e.g. ["0-5460"], for a primary. */
  readonly slots: ReadonlyArray<string>
}

export interface RedisCluster {
  /** Every node's address, `127.0.0.1:<port>`, comma-separated: a value for REDIS_CLUSTER_NODES. */
  readonly seeds: string
  readonly ports: ReadonlyArray<number>
  /** `redis-cli -p <port> <args…>`, answering its output. */
  readonly cli: (port: number, ...args: ReadonlyArray<string>) => Promise<string>
  /** The cluster as the node at `port` sees it (by default the first one alive). */
  readonly nodes: (port?: number) => Promise<ReadonlyArray<ClusterNode>>
  /** Kills the node at `port` with SIGKILL. */
  readonly kill: (port: number) => void
  /** Starts the node at `port` again, with its cluster configuration (it rejoins). */
  readonly restart: (port: number) => Promise<void>
  /** Resolves once every live node reports `cluster_state:ok`. */
  readonly awaitOk: (timeoutMs?: number) => Promise<void>
  readonly stop: () => Promise<void>
}

const run = (command: string, args: ReadonlyArray<string>, timeoutMs = 10_000) =>
  new Promise<string>((resolve, reject) =>
    execFile(
      command,
      args,
      { timeout: timeoutMs },
      (error, stdout, stderr) =>
        error === null ? resolve(stdout) : reject(new Error(`${command} ${args.join(" ")}: ${stderr}${stdout}`))
    )
  )

/** True when redis-server and redis-cli are installed; otherwise the rule of `unavailable`. */
export const redisClusterAvailable = async (): Promise<boolean> => {
  try {
    await run("redis-server", ["--version"])
    await run("redis-cli", ["--version"])
    return true
  } catch (error) {
    return unavailable("redis-server and redis-cli (for a Redis Cluster)", "the Redis Cluster suites", error)
  }
}

/** Parses `CLUSTER NODES`. */
export const parseClusterNodes = (text: string): Array<ClusterNode> =>
  text.trim().split("\n").filter((line) => line.length > 0).map((line) => {
    const [id, address, flags, primary, , , , , ...slots] = line.split(" ")
    const flagList = flags.split(",")
    return {
      id,
      port: Number(/:(\d+)@/.exec(address)?.[1] ?? 0),
      role: flagList.includes("master") ? "primary" as const : "replica" as const,
      primaryId: primary === "-" ? undefined : primary,
      failed: flagList.some((f) => f === "fail" || f === "fail?" || f === "noaddr"),
      slots: slots.filter((s) => !s.startsWith("["))
    }
  })

/**
 * Starts six nodes and makes them one cluster; resolves once it is `ok` and
 * every replica has synchronised with its primary.
 */
export const startRedisCluster = async (
  options: { readonly nodeTimeoutMs?: number } = {}
): Promise<RedisCluster> => {
  const dir = mkdtempSync(join(tmpdir(), "strata-redis-cluster-"))
  const ports: Array<number> = []
  while (ports.length < 6) {
    const port = await freePort()
    // The cluster bus listens on port + 10000: both must be free.
    if (port <= 55_535 && !ports.includes(port)) ports.push(port)
  }
  const children = new Map<number, ChildProcess>()
  const spawnNode = (port: number) => {
    const child = spawn("redis-server", [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--cluster-enabled",
      "yes",
      "--cluster-config-file",
      join(dir, `nodes-${port}.conf`),
      "--cluster-node-timeout",
      String(options.nodeTimeoutMs ?? 1000),
      "--dir",
      dir,
      "--save",
      "",
      "--appendonly",
      "no",
      "--daemonize",
      "no",
      "--logfile",
      join(dir, `redis-${port}.log`)
    ], { stdio: "ignore" })
    child.on("error", () => undefined)
    children.set(port, child)
  }
  // Should the test process end without stop() (a hook timing out), the nodes end with it.
  const killAll = () => {
    for (const child of children.values()) child.kill("SIGKILL")
  }
  process.once("exit", killAll)
  const alive = (port: number) => {
    const child = children.get(port)
    return child !== undefined && child.exitCode === null && child.signalCode === null
  }
  const cli = (port: number, ...args: ReadonlyArray<string>) =>
    run("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args])
  const answers = async (port: number) => (await cli(port, "ping").catch(() => "")).trim() === "PONG"
  const until = async (what: string, check: () => Promise<boolean>, timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`Redis Cluster in ${dir}: ${what} not within ${timeoutMs} ms`)
      await sleep(100)
    }
  }
  const nodes = async (port?: number) =>
    parseClusterNodes(await cli(port ?? ports.find(alive) ?? ports[0], "cluster", "nodes"))
  const awaitOk = (timeoutMs = 30_000) =>
    until("cluster_state:ok on every live node", async () => {
      const states = await Promise.all(
        ports.filter(alive).map((p) => cli(p, "cluster", "info").catch(() => ""))
      )
      return states.every((info) => info.includes("cluster_state:ok"))
    }, timeoutMs)
  const stop = async () => {
    process.removeListener("exit", killAll)
    killAll()
    await Promise.all([...children.values()].map((child) =>
      child.exitCode !== null || child.signalCode !== null
        ? undefined
        : new Promise((resolve) => child.once("exit", resolve))
    ))
    rmSync(dir, { recursive: true, force: true })
  }

  try {
    for (const port of ports) spawnNode(port)
    await until("every node answering PING", async () => (await Promise.all(ports.map(answers))).every(Boolean), 10_000)
    await run(
      "redis-cli",
      ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "1", "--cluster-yes"],
      30_000
    )
    await awaitOk()
    await until("every replica in sync with its primary", async () => {
      const replicas = (await nodes()).filter((n) => n.role === "replica")
      if (replicas.length !== 3) return false
      const infos = await Promise.all(replicas.map((r) => cli(r.port, "info", "replication")))
      return infos.every((info) => info.includes("master_link_status:up"))
    }, 30_000)
  } catch (error) {
    await stop()
    throw error
  }

  return {
    seeds: ports.map((p) => `127.0.0.1:${p}`).join(","),
    ports,
    cli,
    nodes,
    kill: (port) => {
      children.get(port)?.kill("SIGKILL")
    },
    restart: async (port) => {
      spawnNode(port)
      await until(`the node at ${port} answering PING`, () => answers(port), 10_000)
    },
    awaitOk,
    stop
  }
}
