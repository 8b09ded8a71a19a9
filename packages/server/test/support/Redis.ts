/**
 * The local Redis (127.0.0.1:6379, or TEST_REDIS_URL) for integration suites.
 * Locally, a missing server skips the suite with a loud notice; under CI=true
 * it fails the run.
 */
import { ManagedRuntime, Redacted } from "effect"
import { Cache } from "../../src/cache/Cache.ts"

export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379"

export const redisAvailable = async (): Promise<boolean> => {
  const probe = ManagedRuntime.make(Cache.layerRedis({ url: Redacted.make(REDIS_URL), prefix: "strata-probe:" }))
  try {
    await probe.runPromise(Cache.use((c) => c.ping))
    return true
  } catch (error) {
    if (process.env.CI === "true") throw new Error(`Redis at ${REDIS_URL} is required under CI=true`, { cause: error })
    console.warn(`\n!!! Redis at ${REDIS_URL} is unreachable: SKIPPING the Redis suites !!!\n`)
    return false
  } finally {
    await probe.dispose()
  }
}
