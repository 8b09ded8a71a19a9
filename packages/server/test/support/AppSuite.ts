/**
 * One TestApp per `describe`: made before its tests (`undefined` when the
 * backing service is unavailable, which skips them), disposed after them.
 */
import { afterAll, beforeAll, it } from "@effect/vitest"
import type { TestApp } from "./TestApp.ts"

export const withTestApp = (
  setup: () => Promise<TestApp | undefined>,
  teardown: () => Promise<void> = async () => {}
) => {
  let app: TestApp | undefined
  beforeAll(async () => {
    app = await setup()
  }, 60_000)
  afterAll(async () => {
    await app?.dispose()
    await teardown()
  }, 60_000)
  /** A test against the suite's app. */
  return (title: string, f: (app: TestApp) => Promise<void>) =>
    it(title, async (ctx) => {
      if (app === undefined) return ctx.skip()
      await f(app)
    }, 30_000)
}
