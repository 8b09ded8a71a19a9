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

/**
 * A write's answer: the resource made at `location`, its JSON text, and the
 * change feed position of the write (a bulk write answers 200, with no `location`) (`Strata-Position`, README: Change feed),
 * which a later read may send to see everything up to it.
 */
export const created = (
  location: string | null,
  body: string,
  position: string | null,
  status = 201
): Answer => {
  const headers: Record<string, string> = {}
  if (location !== null) headers.location = location
  if (position !== null) headers["strata-position"] = position
  return { status, headers, body }
}

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
