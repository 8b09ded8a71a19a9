/**
 * Process metrics (README: Operations), sampled every 5 s, which costs next to nothing:
 * event-loop delay over the last interval (Node's `monitorEventLoopDelay`, a
 * histogram kept by libuv, read then reset) and memory (`process.memoryUsage`).
 */
import { Effect, Layer, Metric, Schedule } from "effect"
import { monitorEventLoopDelay } from "node:perf_hooks"

export const eventLoopDelayP50 = Metric.gauge("nodejs_eventloop_delay_p50_seconds", {
  description: "Median event-loop delay over the last 5 s"
})
export const eventLoopDelayP99 = Metric.gauge("nodejs_eventloop_delay_p99_seconds", {
  description: "99th percentile of the event-loop delay over the last 5 s"
})
export const eventLoopDelayMax = Metric.gauge("nodejs_eventloop_delay_max_seconds", {
  description: "Longest event-loop delay over the last 5 s"
})
export const heapUsed = Metric.gauge("nodejs_heap_used_bytes", { description: "V8 heap in use" })
export const heapTotal = Metric.gauge("nodejs_heap_total_bytes", { description: "V8 heap allocated" })
export const residentMemory = Metric.gauge("process_resident_memory_bytes", {
  description: "Resident set size of the process"
})

export const layerRuntimeMetrics: Layer.Layer<never> = Layer.effectDiscard(Effect.gen(function*() {
  const delay = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const histogram = monitorEventLoopDelay({ resolution: 10 })
      histogram.enable()
      return histogram
    }),
    (histogram) => Effect.sync(() => histogram.disable())
  )
  const sample = Effect.suspend(() => {
    const memory = process.memoryUsage()
    // Nanoseconds; a histogram with no samples yet reports 0.
    const seconds = (ns: number) => (Number.isFinite(ns) ? ns : 0) / 1e9
    const updates = [
      Metric.update(eventLoopDelayP50, seconds(delay.percentile(50))),
      Metric.update(eventLoopDelayP99, seconds(delay.percentile(99))),
      Metric.update(eventLoopDelayMax, seconds(delay.max)),
      Metric.update(heapUsed, memory.heapUsed),
      Metric.update(heapTotal, memory.heapTotal),
      Metric.update(residentMemory, memory.rss)
    ]
    delay.reset()
    return Effect.all(updates, { discard: true })
  })
  yield* sample.pipe(Effect.repeat(Schedule.spaced("5 seconds")), Effect.forkScoped)
}))
