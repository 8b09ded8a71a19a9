/**
 * Whatever no route answered becomes a problem document: an unknown path a 404,
 * a known path asked with another method a 405 with `Allow`, and a defect a 500
 * that carries nothing but the request id (added by withRequestId, around it).
 */
import { MethodNotAllowed, NotFound } from "@strata/domain"
import { Cause, Context, Effect } from "effect"
import { HttpServerRequest, HttpServerResponse } from "effect/http"
import { problemOfFailure, problemResponse } from "./Problems.ts"
import { methodsOf, routeOf } from "./RouteTable.ts"

const isRouteNotFound = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "_tag" in error && error._tag === "HttpServerError" &&
  (error as { reason?: { _tag?: string } }).reason?._tag === "RouteNotFound"

export const withProblemFallback = <E, R>(app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
  Effect.withFiber((fiber) => {
    const request = Context.getUnsafe(fiber.context, HttpServerRequest.HttpServerRequest)
    return Effect.catchCause(app, (cause) => {
      if (Cause.hasInterruptsOnly(cause)) return Effect.failCause(cause)
      const failure = Cause.findErrorOption(cause)
      if (failure._tag === "Some" && isRouteNotFound(failure.value)) {
        const allowed = methodsOf(routeOf(request.url))
        return allowed.length === 0
          ? problemResponse(new NotFound({ detail: `No route for ${request.method} ${request.url}` }))
          : Effect.map(
            problemResponse(
              new MethodNotAllowed({ detail: `${request.method} is not one of ${allowed.join(", ")} here` })
            ),
            HttpServerResponse.setHeader("allow", allowed.join(", "))
          )
      }
      const { log, problem } = problemOfFailure(cause)
      return Effect.andThen(log, problemResponse(problem))
    })
  })
