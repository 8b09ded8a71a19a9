/**
 * Request metrics (SPEC §7): duration by method, route template (never the raw
 * path, to keep label cardinality bounded) and status class, and the requests
 * in flight. Buckets are chosen around the 500 ms P99 target.
 */
import { Context, Effect, Metric } from "effect"
import { HttpServerRequest, type HttpServerResponse } from "effect/http"
import { routeOf } from "../http/RouteTable.ts"
import { labelled } from "./Labels.ts"

export const requestDuration = Metric.histogram("http_server_request_duration_seconds", {
  description: "Duration of HTTP requests",
  boundaries: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
})
// Methods are the ones Node parses, routes templates, statuses classes: a small fixed set.
const durationOf = labelled(requestDuration)

export const requestsInFlight = Metric.gauge("http_server_active_requests", {
  description: "HTTP requests being served"
})

let inFlight = 0

/** Measures `app`, which must already turn every failure into a response. */
export const withHttpMetrics = <E, R>(app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
  Effect.withFiber((fiber) => {
    const request = Context.getUnsafe(fiber.context, HttpServerRequest.HttpServerRequest)
    const start = performance.now()
    inFlight++
    return Metric.update(requestsInFlight, inFlight).pipe(
      Effect.andThen(app),
      Effect.onExit((exit) => {
        inFlight--
        // Only an interruption (the client went away) fails here: nginx calls that 499.
        const status = exit._tag === "Success" ? exit.value.status : 499
        return Effect.andThen(
          Metric.update(requestsInFlight, inFlight),
          Metric.update(
            durationOf({
              method: request.method,
              route: routeOf(request.url),
              status_class: `${Math.floor(status / 100)}xx`
            }),
            (performance.now() - start) / 1000
          )
        )
      })
    )
  })
