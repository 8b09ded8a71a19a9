/**
 * An answer as plain parts (status, headers, JSON text), decided once and sent
 * by either request path: as an `HttpServerResponse` by the HttpApi handlers,
 * written straight to Node's response by the hot routes.
 */
import { HttpServerResponse } from "effect/http"
import type { ServerResponse } from "node:http"

export interface Answer {
  readonly status: number
  /** Without Content-Type and Content-Length: `body` decides both. */
  readonly headers: Record<string, string>
  /** JSON text; none for a 304. */
  readonly body: string | undefined
}

const JSON_TYPE = "application/json"

/** A resource made at `location`, answered with its JSON text. */
export const created = (location: string, body: string): Answer => ({ status: 201, headers: { location }, body })

/** The answer for the HttpApi handlers. */
export const toResponse = (answer: Answer): HttpServerResponse.HttpServerResponse =>
  answer.body === undefined
    ? HttpServerResponse.empty({ status: answer.status, headers: answer.headers })
    : HttpServerResponse.text(answer.body, { status: answer.status, contentType: JSON_TYPE, headers: answer.headers })

/**
 * Writes the answer to Node's response, with `extra` headers (the request id,
 * the rate limit); answers its status. `headers` is the answer's own object,
 * added to in place: an answer is written once.
 */
export const writeAnswer = (res: ServerResponse, answer: Answer, extra: Record<string, string>): number => {
  const headers = answer.headers
  for (const name in extra) headers[name] = extra[name]
  if (answer.body !== undefined) {
    headers["content-type"] = JSON_TYPE
    headers["content-length"] = String(Buffer.byteLength(answer.body))
  }
  res.writeHead(answer.status, headers)
  res.end(answer.body)
  return answer.status
}
