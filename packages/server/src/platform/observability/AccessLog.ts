/**
 * The access log (ACCESS_LOG, on by default): one info line per request with
 * the method, the route template (never the raw path: ids and query strings
 * stay out of the logs), the status and the duration, under the request id
 * the client got back. Fed by the request metrics' observation of each request.
 */
import { Effect } from "effect"
import { RequestId } from "../http/RequestId.ts"
import type { RequestOutcome } from "./HttpMetrics.ts"

export const logAccess = (outcome: RequestOutcome): Effect.Effect<void> => {
  const line = Effect.logInfo(`${outcome.method} ${outcome.route} ${outcome.status}`, {
    method: outcome.method,
    route: outcome.route,
    status: outcome.status,
    durationMs: Math.round(outcome.seconds * 100_000) / 100
  })
  return outcome.requestId === undefined ? line : Effect.provideService(line, RequestId, outcome.requestId)
}
