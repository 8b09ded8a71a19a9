/**
 * The access log (ACCESS_LOG, on by default): one info line per request with
 * the method, the route template (never the raw path: ids and query strings
 * stay out of the logs), the status and the duration, under the request id
 * the client got back.
 */
import { Context, Effect } from "effect"
import { HttpServerRequest, type HttpServerResponse } from "effect/http"
import { RequestId } from "../http/RequestId.ts"
import { routeOf } from "../http/RouteTable.ts"

/** Logs `app`, which must already turn every failure into a response with an `x-request-id`. */
export const withAccessLog = <E, R>(app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
  Effect.withFiber((fiber) => {
    const request = Context.getUnsafe(fiber.context, HttpServerRequest.HttpServerRequest)
    const start = performance.now()
    return Effect.onExit(app, (exit) => {
      // Only an interruption (the client went away) fails here: nginx calls that 499.
      const status = exit._tag === "Success" ? exit.value.status : 499
      const route = routeOf(request.url)
      const line = Effect.logInfo(`${request.method} ${route} ${status}`, {
        method: request.method,
        route,
        status,
        durationMs: Math.round((performance.now() - start) * 100) / 100
      })
      const requestId = exit._tag === "Success" ? exit.value.headers["x-request-id"] : undefined
      return requestId === undefined ? line : Effect.provideService(line, RequestId, requestId)
    })
  })
