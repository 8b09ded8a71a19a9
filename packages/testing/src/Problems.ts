/**
 * The one assertion for a problem answer (README: The API): its status, the problem
 * content type, its stable `type`, its `status`, the request id of the response in
 * its body, and nothing from inside the server (a stack frame, a source path, SQL).
 * It takes a fetch `Response` or a `RawResponse` read off a socket, for the answers
 * the HTTP server gives before a request reaches the app.
 */
import { expect } from "@effect/vitest"

export interface FieldError {
  readonly path: string
  readonly message: string
  readonly keyword?: string
  readonly schemaVersion?: number
  readonly recordId?: string
}

export interface Problem {
  readonly type: string
  readonly status: number
  readonly requestId: string
  readonly detail?: string
  readonly errors?: Array<FieldError>
}

/** A response as read from a raw socket: header names in lower case. */
export interface RawResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/** What a problem must not show: stack frames, source files, modules, SQL and its errors. */
const SERVER_INTERNALS = /\bat \S+ \(|\bat (?:file|node):|node_modules|\.ts:\d|SqlError|SELECT |INSERT |pg_/

/** The request ids the server sends back (RequestId.ts: the client's when sane, else a UUID). */
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/

export const expectProblem = async (res: Response | RawResponse, status: number, type: string): Promise<Problem> => {
  const raw = !(res instanceof Response)
  const header = (name: string) => (raw ? res.headers[name] : res.headers.get(name)) ?? undefined
  const text = raw ? res.body : await res.text()
  // With the text, so a failure shows what came instead.
  expect({ status: res.status, text }).toMatchObject({ status })
  expect(header("content-type")).toMatch(/^application\/problem\+json(?:;|$)/)
  expect(text).not.toMatch(SERVER_INTERNALS)
  const body = JSON.parse(text) as Problem
  expect(body.type).toBe(`/problems/${type}`)
  expect(body.status).toBe(status)
  expect(header("x-request-id")).toMatch(REQUEST_ID)
  expect(body.requestId).toBe(header("x-request-id"))
  return body
}
