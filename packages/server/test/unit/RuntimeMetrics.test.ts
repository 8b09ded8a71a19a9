/**
 * The live heap: the heap in use just after a full garbage collection, which a
 * soak compares minute by minute (the plain heap figure moves with the collector).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"
import { TestClock } from "effect/testing"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { heapLive, layerRuntimeMetrics } from "../../src/platform/observability/RuntimeMetrics.ts"

/** A full collection now: V8's own `gc`, made reachable at run time. */
const fullGc = (): void => {
  setFlagsFromString("--expose-gc")
  ;(runInNewContext("gc") as () => void)()
}

describe("layerRuntimeMetrics", () => {
  it.effect("publishes the heap left after the last full collection", () =>
    Effect.gen(function*() {
      yield* Layer.build(layerRuntimeMetrics)
      fullGc()
      // The observer hears of the collection on a later turn; the next sample (every 5 s) publishes it.
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 50)))
      yield* TestClock.adjust("5 seconds")
      const { value } = yield* Metric.value(heapLive)
      expect(value).toBeGreaterThan(1_000_000)
      expect(value).toBeLessThanOrEqual(process.memoryUsage().heapTotal)
    }))
})
