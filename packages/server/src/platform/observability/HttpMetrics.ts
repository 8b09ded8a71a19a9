/**
 * Request metrics (README: Operations): duration by method, route template (never the raw
 * path, to keep label cardinality bounded) and status class, and the requests
 * in flight. Buckets are chosen around the 500 ms P99 target. The same
 * observation of each request feeds the access log (AccessLog.ts).
 */
import { Context, Effect, Layer, Metric } from "effect"
import { HttpServerRequest, type HttpServerResponse } from "effect/http"
import { routeOf } from "../http/RouteTable.ts"
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
 * three lookups each (profiled on the cached read). Registered for the life of the app.
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
const requestLeft = (): void => {
  inFlight--
}

/** A request ended: the gauge, and its duration by method, route template and status class. */
export const requestEnded = (outcome: RequestOutcome, context: Context.Context<never>): void => {
  requestLeft()
  durationOf({
    method: outcome.method,
    route: outcome.route,
    status_class: STATUS_CLASS[Math.floor(outcome.status / 100)]
  })
    .updateUnsafe(outcome.seconds, context)
}

/**
 * `requestEnded` for one method and route, with its labelled series looked up
 * once per status class instead of once per request: what the hot routes use
 * (the duration observation was about 7 % of a cached read's cost, measured by
 * leaving it out; the label join per request was a part of that).
 */
export const routeRecorder = (method: string, route: string, context: Context.Context<never>) => {
  const byClass = STATUS_CLASS.map((status_class) => durationOf({ method, route, status_class }))
  return {
    method,
    route,
    ended: (status: number, seconds: number): void => {
      requestLeft()
      byClass[Math.floor(status / 100)].updateUnsafe(seconds, context)
    }
  }
}

/** A request begun here was handed on to be answered (and measured) elsewhere. */
export const requestPassedOn = requestLeft

/**
 * Measures `app`, which must already turn every failure into a response, and
 * hands how it ended to `report` as well (the access log, when it is on).
 */
export const withHttpMetrics = <E, R>(
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>,
  report: (outcome: RequestOutcome) => Effect.Effect<void> = () => Effect.void
) =>
  Effect.withFiber((fiber) => {
    const request = Context.getUnsafe(fiber.context, HttpServerRequest.HttpServerRequest)
    const start = performance.now()
    requestStarted()
    return app.pipe(
      Effect.onExit((exit) => {
        // Only an interruption (the client went away) fails here.
        const outcome: RequestOutcome = {
          method: request.method,
          route: routeOf(request.url),
          status: exit._tag === "Success" ? exit.value.status : 499,
          seconds: (performance.now() - start) / 1000,
          requestId: exit._tag === "Success" ? exit.value.headers["x-request-id"] : undefined
        }
        requestEnded(outcome, fiber.context)
        return report(outcome)
      })
    )
  })
