/**
 * The callback path's stand-in: `GET /data/{id}` answered from a plain `node:http`
 * request handler, as records/HotRoutes.ts does on its happy path (key lookup, token
 * take, cache lookup, If-None-Match, the six headers, `writeHead`/`end`).
 *
 * BURST=1 writes each answer with the others of its event-loop turn (`setImmediate`),
 * as platform/http/AnswerBurst.ts does for the real hot route; without it each answer is
 * written as soon as its request is handled.
 *
 *   PORT=3210 [BURST=1] node packages/bench/src/lean/CallbackRoute.ts
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import {
  cache,
  CACHE_HIT,
  keyFor,
  matchesEtag,
  portOf,
  rateLimitPolicy,
  rateLimitState,
  RECORD_CACHE_CONTROL,
  requestIdOf,
  take
} from "./Fixture.ts"

const RECORD_PATH = /^\/data\/([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$/

const fail = (response: ServerResponse, status: number) => {
  response.writeHead(status, { "content-type": "application/problem+json" })
  response.end(JSON.stringify({ status }))
}

/** Answers gathered over one turn and written back to back (AnswerBurst.ts, perTurn). */
const perTurn = (): (write: () => void) => void => {
  let due: Array<() => void> = []
  const flush = () => {
    const writes = due
    due = []
    for (const write of writes) write()
  }
  return (write) => {
    due.push(write)
    if (due.length === 1) setImmediate(flush)
  }
}
const burst = process.env.BURST === "1" ? perTurn() : undefined

const handle = (request: IncomingMessage, response: ServerResponse) => {
  const match = request.method === "GET" ? RECORD_PATH.exec(request.url!) : null
  if (match === null) return fail(response, 404)
  const now = Date.now()
  const key = keyFor(request.headers.authorization, now)
  if (key === undefined) return fail(response, 401)
  const id = match[1].toLowerCase()
  const body = cache.get(key.tenant)?.get(id)
  if (body === undefined) return fail(response, 404)
  const decision = take(key, now)
  if (decision === undefined) return fail(response, 429)
  const given = request.headers["x-request-id"]
  const requestId = requestIdOf(typeof given === "string" ? given : undefined)
  const write = () => {
    const etag = `"${id}"`
    const ifNoneMatch = request.headers["if-none-match"]
    const status = ifNoneMatch !== undefined && matchesEtag(ifNoneMatch, etag) ? 304 : 200
    const headers: Record<string, string> = {
      etag,
      "cache-control": RECORD_CACHE_CONTROL,
      "cache-status": CACHE_HIT,
      "x-request-id": requestId,
      "ratelimit-policy": rateLimitPolicy(key.rateLimit),
      ratelimit: rateLimitState(decision)
    }
    if (status === 200) {
      headers["content-type"] = "application/json"
      headers["content-length"] = String(Buffer.byteLength(body))
    }
    response.writeHead(status, headers)
    response.end(status === 200 ? body : undefined)
  }
  if (burst === undefined) write()
  else burst(write)
}

const server = createServer(handle)
server.listen(portOf(), () => console.log("listening"))
process.on("SIGTERM", () => server.close(() => process.exit(0)))
