/**
 * Problem documents (RFC 9457), rendered once, with the request id in the body:
 * on the HttpApi path the id is put into the failure before HttpApi renders
 * it (`withRequestIdInProblems`, on every endpoint), and anything answered
 * outside HttpApi (admission, unknown routes, defects, the hot routes) is
 * rendered here with it. No body is parsed back to add it.
 *
 * And the one mapping of a database failure to an answer (`databaseProblem`):
 * a database that is down or slow is a 503 the client may retry.
 */
import { InternalError, Unavailable } from "@strata/domain"
import { Cause, Effect, Option } from "effect"
import { HttpServerRespondable, HttpServerResponse } from "effect/http"
import type { ServerResponse } from "node:http"
import { finish, RequestId } from "./RequestId.ts"

/** The one answer to a defect: it names nothing of the server's but the request id. */
export const internalError = (): InternalError =>
  new InternalError({ detail: "Something went wrong on our side; quote the requestId." })

/** A problem of the contract: one of @strata/domain's `Problems`. */
export interface Problem extends HttpServerRespondable.Respondable {
  readonly type: string
  readonly status: number
  readonly requestId?: string | undefined
}

const isProblem = (u: unknown): u is Problem =>
  HttpServerRespondable.isRespondable(u) && typeof (u as Problem).type === "string" &&
  typeof (u as Problem).status === "number"

/** The same problem with `requestId` in it. */
export const withRequestIdIn = <P extends Problem>(problem: P, requestId: string): P => {
  if (requestId === "" || problem.requestId === requestId) return problem
  const Class = problem.constructor as new(fields: object) => P
  return new Class({ ...problem, requestId })
}

/** Failures of `effect` that are problems carry the fiber's request id, ready for HttpApi to render. */
export const withRequestIdInProblems = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.catch(
    effect,
    (error) =>
      isProblem(error)
        ? Effect.flatMap(Effect.service(RequestId), (requestId) => Effect.fail(withRequestIdIn(error, requestId) as E))
        : Effect.fail(error)
  )

/** A problem's response under the fiber's request id (with `X-Request-Id` and, for 429/503, `Retry-After`). */
export const problemResponse = (problem: Problem): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
  Effect.flatMap(
    Effect.service(RequestId),
    (requestId) =>
      Effect.map(HttpServerRespondable.toResponse(withRequestIdIn(problem, requestId)), (r) => finish(r, requestId))
  )

/** A problem's whole response for a request answered outside a fiber, with `headers` added. */
export const renderProblem = (
  problem: Problem,
  requestId: string,
  headers: Record<string, string>
): HttpServerResponse.HttpServerResponse =>
  finish(
    HttpServerResponse.setHeaders(
      Effect.runSync(HttpServerRespondable.toResponse(withRequestIdIn(problem, requestId))),
      headers
    ),
    requestId
  )

/** Writes a response made the app's way (a problem document) to Node's response. */
export const writeResponse = (res: ServerResponse, response: HttpServerResponse.HttpServerResponse): number => {
  const body = response.body
  res.writeHead(response.status, response.headers)
  res.end(body._tag === "Uint8Array" ? body.body : undefined)
  return response.status
}

/** What this module needs of a database failure (sql/DbError.ts), without importing the database's folder. */
interface DatabaseFailure {
  readonly _tag: "DbError"
  readonly transient: boolean
  readonly message: string
}

const isDatabaseFailure = (u: unknown): u is DatabaseFailure =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "DbError"

/**
 * The one mapping of a database failure to an answer: a database that is down
 * or slow (DbError.transient) is a 503 the client may retry; anything else is
 * no problem of the contract (undefined: a bug, answered 500).
 */
export const databaseProblem = (
  error: DatabaseFailure,
  detail = "The database is unavailable; retry shortly."
): Unavailable | undefined => error.transient ? new Unavailable({ detail }) : undefined

/** How a database that is down or slow is logged: a warning, not an error (it is no bug). */
const unavailableWarning = (error: DatabaseFailure) => Effect.logWarning("Database unavailable", error.message)

/** `databaseProblem` for handlers: the 503 as a failure (logged as a warning), anything else a defect. */
export const unavailableOnTransient = (error: DatabaseFailure, detail?: string): Effect.Effect<never, Unavailable> => {
  const problem = databaseProblem(error, detail)
  return problem === undefined
    ? Effect.die(error)
    : Effect.andThen(unavailableWarning(error), Effect.fail(problem))
}

/**
 * The problem a failed request answers, and the line it is logged with: a
 * database failure as `databaseProblem` says (a warning), a problem of the
 * contract as itself, anything else a 500 that names nothing but the request
 * id (an error with its cause).
 */
export const problemOfFailure = (
  cause: Cause.Cause<unknown>
): { readonly problem: Problem; readonly log: Effect.Effect<void> } => {
  const error = Cause.findErrorOption(cause)
  if (Option.isSome(error) && isDatabaseFailure(error.value)) {
    const problem = databaseProblem(error.value)
    if (problem !== undefined) {
      return { problem, log: unavailableWarning(error.value) }
    }
  }
  if (Option.isSome(error) && isProblem(error.value)) return { problem: error.value, log: Effect.void }
  return { problem: internalError(), log: Effect.logError("Unhandled failure", cause) }
}
