/**
 * The Redis record cache as the bench sets it up: a key prefix of its own for
 * the run, whose keys are deleted when the scope closes. Talks to Redis through
 * `redis-cli`, so the bench needs no client of its own.
 */
import { recordCacheKey } from "@strata/server"
import { Effect, type Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { once } from "node:events"
import { createInterface } from "node:readline"
import { attempt, type BenchError, errorText, reportCleanupFailure } from "./BenchError.ts"
import type { Environment } from "./Server.ts"

const REDIS_TIMEOUT_MS = 5_000

/** Runs redis-cli against `url` and answers its output; fails with its message or after a timeout. */
const redisCli = (url: string, args: ReadonlyArray<string>): Promise<string> =>
  new Promise((resolve, reject) => {
    const child = spawn("redis-cli", ["-u", url, "--no-auth-warning", ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      timeout: REDIS_TIMEOUT_MS
    })
    let out = ""
    let err = ""
    child.stdout.setEncoding("utf8").on("data", (s: string) => out += s)
    child.stderr.setEncoding("utf8").on("data", (s: string) => err += s)
    child.on("error", (e: NodeJS.ErrnoException) =>
      reject(e.code === "ENOENT" ? new Error("redis-cli is not on PATH") : e))
    child.on("close", (code, signal) =>
      code === 0
        ? resolve(out.trim())
        : reject(new Error(err.trim() || out.trim() || `redis-cli exited ${code ?? signal}`)))
  })

/** Deletes every key under `prefix` (SCAN, then DEL in batches through one redis-cli); answers how many. */
const deleteKeys = async (url: string, prefix: string): Promise<number> => {
  const args = ["-u", url, "--no-auth-warning"]
  const scan = spawn("redis-cli", [...args, "--scan", "--pattern", `${prefix}*`], {
    stdio: ["ignore", "pipe", "inherit"]
  })
  const del = spawn("redis-cli", args, { stdio: ["pipe", "ignore", "inherit"] })
  const exited = (child: ChildProcess) =>
    new Promise<void>((resolve, reject) => {
      child.on("error", reject)
      child.on("close", (code) => code === 0 ? resolve() : reject(new Error(`redis-cli exited ${code}`)))
    })
  const scanned = exited(scan)
  const deleted = exited(del)
  del.stdin.on("error", () => {}) // the exit status carries the real failure
  let total = 0
  let batch: Array<string> = []
  const flush = async () => {
    if (batch.length === 0) return
    // The prefix is ours, and record cache keys URI-encode the tenant: no spaces or quotes to escape.
    if (!del.stdin.write(`DEL ${batch.join(" ")}\n`)) await once(del.stdin, "drain")
    batch = []
  }
  for await (const line of createInterface({ input: scan.stdout })) {
    if (line === "") continue
    batch.push(line)
    total++
    if (batch.length === 500) await flush()
  }
  await flush()
  del.stdin.end()
  await Promise.all([scanned, deleted])
  return total
}

export const redactUrl = (text: string): string => {
  const url = URL.parse(text)
  if (url === null) return "(unparseable URL)"
  if (url.password !== "") url.password = "***"
  return url.toString()
}

export interface CacheSetup {
  /** Set when the server with the cache uses Redis. */
  readonly redis?: { readonly url: string; readonly prefix: string }
  /** Environment for the server with the cache (undefined: removed). */
  readonly env: Environment
  readonly description: string
}

/**
 * Redis at `url` when it answers, under a fresh key prefix whose keys are
 * deleted when the scope closes; else (or with `off` or an empty URL) the
 * in-process cache.
 */
export const benchCache = (
  url: string,
  log: (message: string) => void
): Effect.Effect<CacheSetup, never, Scope.Scope> => {
  const memory: CacheSetup = {
    env: { REDIS_URL: undefined, REDIS_CLUSTER_NODES: undefined },
    description: `in-process cache (CACHE_MAX_ENTRIES ${process.env.CACHE_MAX_ENTRIES ?? "10000, the default"})`
  }
  if (url === "off" || url === "") return Effect.succeed(memory)
  const probe = attempt(async (): Promise<CacheSetup> => {
    const pong = await redisCli(url, ["PING"])
    if (pong !== "PONG") throw new Error(pong || "no answer to PING")
    const version = /redis_version:(\S+)/.exec(await redisCli(url, ["INFO", "server"]))?.[1] ?? "(unknown version)"
    const prefix = `strata-bench-${randomBytes(4).toString("hex")}:`
    return {
      redis: { url, prefix },
      env: { REDIS_URL: url, REDIS_KEY_PREFIX: prefix, REDIS_CLUSTER_NODES: undefined },
      description: `Redis ${version} at ${redactUrl(url)}, key prefix ${prefix}`
    }
  }).pipe(Effect.catch((e) =>
    Effect.sync(() => {
      const why = `Redis at ${redactUrl(url)} does not answer (${errorText(e)})`
      log(`${why}: falling back to the ${memory.description}`)
      return { ...memory, description: `${memory.description}, because ${why}` }
    })
  ))
  return Effect.acquireRelease(probe, (setup) => {
    if (setup.redis === undefined) return Effect.void
    const { url, prefix } = setup.redis
    return attempt(() => deleteKeys(url, prefix)).pipe(
      Effect.tap((n) => Effect.sync(() => log(`deleted ${n.toLocaleString("en-US")} Redis keys under ${prefix}`))),
      Effect.catch(reportCleanupFailure(log, "deleting the Redis keys"))
    )
  })
}

/** How many of `ids` have a key in Redis, as the server's record cache names them for `tenant`. */
export const countRecordKeys = (
  redis: NonNullable<CacheSetup["redis"]>,
  tenant: string,
  ids: ReadonlyArray<string>
): Effect.Effect<number, BenchError> =>
  ids.length === 0
    ? Effect.succeed(0)
    // The server's Redis store puts its key prefix in front of every key.
    : attempt(async () =>
      Number(await redisCli(redis.url, ["EXISTS", ...ids.map((id) => `${redis.prefix}${recordCacheKey(tenant, id)}`)]))
    )
