/**
 * Request metrics (README: Operations): duration by method, route template (never the raw
 * path, to keep label cardinality bounded) and status class, and the requests
 * in flight. Buckets are chosen around the 500 ms P99 target. Fed by each
 * request's bookkeeping (RequestBookkeeping.ts), which writes its access line too.
 */
import { Effect, Layer, Metric } from "effect"
import { LATENCY_BUCKETS } from "./DbMetrics.ts"
import { labelled } from "./Labels.ts"

// Methods are the ones Node parses, routes templates, statuses classes: a small fixed set.
const durationOf = labelled((attributes) =>
  Metric.histogram("http_server_request_duration_seconds", {
    description: "Duration of HTTP requests",
    boundaries: LATENCY_BUCKETS,
    attributes
  })
)
const STATUS_CLASS = ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"]

export const requestsInFlight = Metric.gauge("http_server_active_requests", {
  description: "HTTP requests being served"
})

/** How one request ended. */
export interface RequestOutcome {
  readonly method: string
  readonly route: string
  /** 499 when the client went away before the answer (as nginx says). */
  readonly status: number
  readonly seconds: number
  /** The id the client got back in `X-Request-Id`. */
  readonly requestId: string | undefined
}

let inFlight = 0

/**
 * The gauge of requests in flight, read when metrics are read: every request
 * changes the count twice, and an update through the metric registry costs
 * three lookups each. Registered for the life of the app.
 */
export const layerHttpMetrics: Layer.Layer<never> = Layer.effectDiscard(
  Effect.acquireRelease(
    Effect.map(Effect.context<never>(), (context) =>
      Metric.registerUnsafe(requestsInFlight, context, {
        get: () => ({ value: inFlight }),
        update: () => {},
        modify: () => {}
      })),
    (registration) => Effect.sync(() => registration.remove())
  )
)

/** A request began (for the gauge of requests being served). */
export const requestStarted = (): void => {
  inFlight++
}

/** A request is no longer being served here (for the gauge). */
export const requestLeft = (): void => {
  inFlight--
}

/** The duration series of a request by method, route template and status. */
export const durationFor = (method: string, route: string, status: number) =>
  durationOf({ method, route, status_class: STATUS_CLASS[Math.floor(status / 100)] })

/** The duration series of one method and route, by status, looked up once per status class. */
export const durationsOf = (method: string, route: string) => {
  const byClass = STATUS_CLASS.map((status_class) => durationOf({ method, route, status_class }))
  return (status: number) => byClass[Math.floor(status / 100)]
}
