/**
 * Whatever no route answered becomes a problem document: an unknown path a 404,
 * a known path asked with another method a 405 with `Allow`, and a defect a 500
 * that carries nothing but the request id (added by withRequestId, around it).
 */
import { InternalError, MethodNotAllowed, NotFound } from "@strata/domain"
import { Cause, Context, Effect } from "effect"
import { HttpServerRequest, HttpServerRespondable, HttpServerResponse } from "effect/http"
import { methodsOf, routeOf } from "./RouteTable.ts"

/** The one answer to a defect: it names nothing of the server's but the request id. */
export const internalError = (): InternalError =>
  new InternalError({ detail: "Something went wrong on our side; quote the requestId." })

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
          ? HttpServerRespondable.toResponse(new NotFound({ detail: `No route for ${request.method} ${request.url}` }))
          : Effect.map(
            HttpServerRespondable.toResponse(
              new MethodNotAllowed({ detail: `${request.method} is not one of ${allowed.join(", ")} here` })
            ),
            HttpServerResponse.setHeader("allow", allowed.join(", "))
          )
      }
      return Effect.andThen(
        Effect.logError("Unhandled failure", cause),
        HttpServerRespondable.toResponse(internalError())
      )
    })
  })
