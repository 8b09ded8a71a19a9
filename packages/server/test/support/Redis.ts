/**
 * Redis for tests: the shared server at 127.0.0.1:6379 (TEST_REDIS_URL), which
 * under CI=true must answer, and private `redis-server` processes a test may kill.
 */
import { ManagedRuntime, Redacted } from "effect"
import { spawn } from "node:child_process"
import { CacheStore } from "../../src/platform/cache/CacheStore.ts"
import { freePort } from "./Network.ts"

export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379"

/** True when the shared Redis answers; under CI=true, throws when it does not. */
export const redisAvailable = async () => {
  const probe = ManagedRuntime.make(CacheStore.layerRedis({ url: Redacted.make(REDIS_URL), prefix: "strata-probe:" }))
  try {
    await probe.runPromise(CacheStore.use((c) => c.ping))
    return true
  } catch (error) {
    if (process.env.CI === "true") throw new Error(`Redis at ${REDIS_URL} is required under CI=true`, { cause: error })
    console.warn(`\n!!! Redis at ${REDIS_URL} is unreachable: SKIPPING the Redis suites !!!\n`)
    return false
  } finally {
    await probe.dispose()
  }
}

/** A private, non-persistent redis-server on a free port; `kill` takes it down hard. */
export const startRedisServer = async (): Promise<{ readonly url: string; readonly kill: () => void }> => {
  const port = await freePort()
  const child = spawn("redis-server", [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no"
  ], {
    stdio: "ignore"
  })
  await new Promise((resolve) => setTimeout(resolve, 300))
  return { url: `redis://127.0.0.1:${port}`, kill: () => child.kill("SIGKILL") }
}
