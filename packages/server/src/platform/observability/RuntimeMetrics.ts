/**
 * Process metrics (README: Operations), sampled every 5 s, which costs next to nothing:
 * event-loop delay over the last interval (Node's `monitorEventLoopDelay`, a
 * histogram kept by libuv, read then reset) and memory (`process.memoryUsage`),
 * with the heap in use just after the last full garbage collection: what is
 * live, which only a leak makes grow (the plain heap figure is mostly where the
 * collector happens to be between collections).
 */
import { Effect, Layer, Metric, Schedule } from "effect"
import { constants, monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks"
import { getHeapStatistics } from "node:v8"

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
export const heapLive = Metric.gauge("nodejs_heap_live_bytes", {
  description: "V8 heap in use just after the last full garbage collection"
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
  // Read in the observer, right after a full collection; published with the next sample.
  let live: number | undefined
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      const observer = new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) {
          const { detail } = entry as { readonly detail?: { readonly kind?: number } }
          if (detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
            live = getHeapStatistics().used_heap_size
          }
        }
      })
      observer.observe({ entryTypes: ["gc"] })
      return observer
    }),
    (observer) => Effect.sync(() => observer.disconnect())
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
      Metric.update(residentMemory, memory.rss),
      ...(live === undefined ? [] : [Metric.update(heapLive, live)])
    ]
    delay.reset()
    return Effect.all(updates, { discard: true })
  })
  yield* sample.pipe(Effect.repeat(Schedule.spaced("5 seconds")), Effect.forkScoped)
}))
