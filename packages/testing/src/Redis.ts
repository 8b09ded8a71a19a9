/**
 * Redis for tests: the shared server at 127.0.0.1:6379 (TEST_REDIS_URL), which
 * under CI=true must answer, and private `redis-server` processes a test may kill.
 */
import { CacheStore } from "@strata/server"
import { ManagedRuntime, Redacted } from "effect"
import { spawn } from "node:child_process"
import { freePort } from "./Network.ts"
import { unavailable } from "./Services.ts"
import { sleep } from "./Waiting.ts"

export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379"

/** True when the shared Redis answers; otherwise the rule of `unavailable`. */
export const redisAvailable = async () => {
  const probe = ManagedRuntime.make(CacheStore.layerRedis({ url: Redacted.make(REDIS_URL), prefix: "strata-probe:" }))
  try {
    await probe.runPromise(CacheStore.use((c) => c.ping))
    return true
  } catch (error) {
    return unavailable(`Redis at ${REDIS_URL}`, "the Redis suites", error)
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
  await sleep(300)
  return { url: `redis://127.0.0.1:${port}`, kill: () => child.kill("SIGKILL") }
}
