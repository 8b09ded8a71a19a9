/**
 * The request id (README: The API): taken from the client's `X-Request-Id` when it is sane,
 * made up otherwise, sent back on every response and written into every problem.
 */
import { Context, Effect } from "effect"
import { HttpServerRequest, HttpServerResponse } from "effect/http"
import { randomUUID } from "node:crypto"

export const RequestId = Context.Reference<string>("strata/http/RequestId", { defaultValue: () => "" })

const SANE_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/
const PROBLEM_JSON = "application/problem+json"

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

/** Gives the request its id: in the fiber (logs, spans), on the response and in any problem document. */
export const withRequestId = <E, R>(app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
  Effect.withFiber<HttpServerResponse.HttpServerResponse, E, R>((fiber) => {
    const request = Context.getUnsafe(fiber.context, HttpServerRequest.HttpServerRequest)
    const requestId = requestIdOf(request.headers["x-request-id"])
    return app.pipe(
      Effect.map((response) => finish(response, requestId)),
      Effect.provideService(RequestId, requestId)
    )
  })
