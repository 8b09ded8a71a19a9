/**
 * The request id (README: The API): taken from the client's `X-Request-Id` when it is sane,
 * made up otherwise, sent back on every response and written into every problem.
 */
import { Context, Effect } from "effect"
import { HttpServerRequest, HttpServerResponse } from "effect/http"
import { randomUUID } from "node:crypto"
import { ACCEPTED_CODINGS } from "./ContentCoding.ts"

export const RequestId = Context.Reference<string>("strata/http/RequestId", { defaultValue: () => "" })

const SANE_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/

/** The client's request id when it is sane, a new one otherwise. */
export const requestIdOf = (given: string | undefined): string =>
  given !== undefined && SANE_REQUEST_ID.test(given) ? given : randomUUID()

/**
 * Adds the request id to the headers, `Retry-After` to a 429 or 503 that has none,
 * and to a 415 the request body codings accepted (`Accept-Encoding`, RFC 9110 §12.5.3).
 * (Problem documents carry it in the body already: Problems.ts renders them with it.)
 */
export const finish = (response: HttpServerResponse.HttpServerResponse, requestId: string) => {
  let out = HttpServerResponse.setHeader(response, "x-request-id", requestId)
  if (out.status === 415) out = HttpServerResponse.setHeader(out, "accept-encoding", ACCEPTED_CODINGS)
  return (out.status === 503 || out.status === 429) && out.headers["retry-after"] === undefined
    ? HttpServerResponse.setHeader(out, "retry-after", "1")
    : out
}

/** Gives the request its id: in the fiber (logs, spans, problem documents) and on the response. */
export const withRequestId = <E, R>(app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
  Effect.withFiber<HttpServerResponse.HttpServerResponse, E, R>((fiber) => {
    const request = Context.getUnsafe(fiber.context, HttpServerRequest.HttpServerRequest)
    const requestId = requestIdOf(request.headers["x-request-id"])
    return app.pipe(
      Effect.map((response) => finish(response, requestId)),
      Effect.provideService(RequestId, requestId)
    )
  })
