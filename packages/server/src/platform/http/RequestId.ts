/**
 * The request id (SPEC §2): taken from the client's `X-Request-Id` when it is sane,
 * made up otherwise, sent back on every response and written into every problem.
 * This outermost middleware is also where anything unhandled becomes a problem
 * document: unknown routes a 404, defects a 500 that carries only the request id.
 */
import { InternalError, MethodNotAllowed, NotFound } from "@strata/domain"
import { Cause, Context, Effect } from "effect"
import { HttpServerRequest, HttpServerRespondable, HttpServerResponse } from "effect/http"
import { randomUUID } from "node:crypto"
import { methodsOf, routeOf } from "./RouteTable.ts"

export const RequestId = Context.Reference<string>("strata/http/RequestId", { defaultValue: () => "" })

const SANE_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/
const PROBLEM_JSON = "application/problem+json"

const isRouteNotFound = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "_tag" in error && error._tag === "HttpServerError" &&
  (error as { reason?: { _tag?: string } }).reason?._tag === "RouteNotFound"

/** The client's request id when it is sane, a new one otherwise. */
export const requestIdOf = (given: string | undefined): string =>
  given !== undefined && SANE_REQUEST_ID.test(given) ? given : randomUUID()

/** Adds the request id to the headers and, for problem documents, to the body. */
export const finish = (response: HttpServerResponse.HttpServerResponse, requestId: string) => {
  let out = HttpServerResponse.setHeader(response, "x-request-id", requestId)
  if ((out.status === 503 || out.status === 429) && out.headers["retry-after"] === undefined) {
    out = HttpServerResponse.setHeader(out, "retry-after", "1")
  }
  const body = out.body
  if (body._tag === "Uint8Array" && body.contentType === PROBLEM_JSON) {
    const problem = JSON.parse(body.text ?? new TextDecoder().decode(body.body))
    out = HttpServerResponse.setBody(
      out,
      HttpServerResponse.jsonUnsafe({ ...problem, requestId }, { contentType: PROBLEM_JSON }).body
    )
  }
  return out
}

export const withRequestId = <E, R>(app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
  Effect.withFiber((fiber) => {
    const request = Context.getUnsafe(fiber.context, HttpServerRequest.HttpServerRequest)
    const requestId = requestIdOf(request.headers["x-request-id"])
    return app.pipe(
      Effect.catchCause((cause) => {
        if (Cause.hasInterruptsOnly(cause)) return Effect.failCause(cause)
        const failure = Cause.findErrorOption(cause)
        if (failure._tag === "Some" && isRouteNotFound(failure.value)) {
          const allowed = methodsOf(routeOf(request.url))
          return allowed.length === 0
            ? HttpServerRespondable.toResponse(
              new NotFound({ detail: `No route for ${request.method} ${request.url}` })
            )
            : Effect.map(
              HttpServerRespondable.toResponse(
                new MethodNotAllowed({ detail: `${request.method} is not one of ${allowed.join(", ")} here` })
              ),
              HttpServerResponse.setHeader("allow", allowed.join(", "))
            )
        }
        return Effect.andThen(
          Effect.logError("Unhandled failure", cause),
          HttpServerRespondable.toResponse(
            new InternalError({ detail: "Something went wrong on our side; quote the requestId." })
          )
        )
      }),
      Effect.map((response) => finish(response, requestId)),
      Effect.provideService(RequestId, requestId)
    )
  })
