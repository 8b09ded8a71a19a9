/**
 * The two hot routes on their happy path, served straight from Node's
 * `request` event: `GET /data/{id}` (from the in-process answers, or read
 * through Redis and the database as the app does), and `POST /data` without an
 * `Idempotency-Key`. Every other request, and
 * every request here that is not plainly fine (no or unknown key, a key not
 * cached yet, a lease of rate-limit tokens used up, a body that does not
 * validate, a stream whose current schema this process does not know or
 * whose schema the record breaks, an id no record can have, a sampled trace),
 * goes to the HttpApi app as it came — a POST's body as it was read — and
 * gets the app's answer, problems included.
 *
 * Why: through HttpApi a cached read costs a fiber, a middleware chain and a
 * Schema encode; here it costs a map lookup and a socket write. What happens
 * is the same: the key is checked with its scope, the rate limit is applied
 * (from the replica's lease), in-flight requests are counted against
 * MAX_IN_FLIGHT, the deadline holds, the request id, metrics and the access
 * log are written, a record is answered 201 only after its group commit. The
 * contract suite runs over a real socket to hold the two paths together.
 */
import { isNewRecord, NotFound, type StoredRecord } from "@strata/domain"
import {
  type Array as Arr,
  Cause,
  Clock,
  Context,
  Duration,
  Effect,
  Exit,
  Layer,
  LogLevel,
  Option,
  References,
  Tracer
} from "effect"
import { Headers, HttpServerRespondable, HttpServerResponse, HttpTraceContext } from "effect/http"
import { randomBytes } from "node:crypto"
import { IncomingMessage, type ServerResponse } from "node:http"
import { rateLimitHeaders, rateLimitPolicy, rateLimitState } from "../auth/Authentication.ts"
import { RateLimits } from "../auth/RateLimits.ts"
import { verdictOf, VerifiedKeys } from "../auth/VerifiedKeys.ts"
import type { BucketDecision, BucketLimit } from "../platform/cache/TokenBucket.ts"
import { HttpConfig } from "../platform/config/HttpConfig.ts"
import { LimitsConfig } from "../platform/config/LimitsConfig.ts"
import { TelemetryConfig } from "../platform/config/TelemetryConfig.ts"
import { Admission, pastDeadline } from "../platform/http/Admission.ts"
import { makeAnswerBurst } from "../platform/http/AnswerBurst.ts"
import { isJsonContentType, isUtf8 } from "../platform/http/JsonBody.ts"
import type { FastPath, HandOver } from "../platform/http/NodeServer.ts"
import { internalError } from "../platform/http/ProblemFallback.ts"
import { finish, requestIdOf } from "../platform/http/RequestId.ts"
import { parseExact } from "../platform/json/ExactJson.ts"
import { logAccess } from "../platform/observability/AccessLog.ts"
import {
  type RequestOutcome,
  requestPassedOn,
  requestStarted,
  routeRecorder
} from "../platform/observability/HttpMetrics.ts"
import { samplingRatio, traceparentOf } from "../platform/observability/Tracing.ts"
import { databaseUnavailable, isTransient } from "../platform/sql/DbError.ts"
import { StreamSchemas } from "../schemas/StreamSchemas.ts"
import { prepareRecord } from "./Prepare.ts"
import { type CacheOutcome, RecordCache } from "./RecordCache.ts"
import { cacheStatusOf, matchesEtag, RECORD_CACHE_CONTROL } from "./RecordHeaders.ts"
import { recordIdTime } from "./RecordId.ts"
import { recordText } from "./RecordJson.ts"
import { RecordWriter } from "./RecordWriter.ts"

const RECORD_PATH = /^\/data\/([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$/
const BEARER = /^Bearer +(\S+) *$/i
const utf8 = new TextDecoder("utf-8", { fatal: true })

const headerOf = (request: IncomingMessage, name: string): string | undefined => {
  const value = request.headers[name]
  return typeof value === "string" ? value : undefined
}

/** A request whose body was read here, for the app to read again. */
const replayOf = (request: IncomingMessage, body: Buffer): IncomingMessage => {
  const copy = new IncomingMessage(request.socket)
  copy.method = request.method
  copy.url = request.url
  copy.httpVersion = request.httpVersion
  copy.httpVersionMajor = request.httpVersionMajor
  copy.httpVersionMinor = request.httpVersionMinor
  copy.headers = request.headers
  copy.rawHeaders = request.rawHeaders
  // Complete, so that ending or destroying the copy does not abort the connection.
  copy.complete = true
  copy.push(body)
  copy.push(null)
  return copy
}

/** A response the app's own way made (problem documents), written to Node's response. */
const send = (res: ServerResponse, response: HttpServerResponse.HttpServerResponse) => {
  const body = response.body
  res.writeHead(response.status, response.headers)
  res.end(body._tag === "Uint8Array" ? body.body : undefined)
}

/** The span of a `traceparent` this request made up for itself: not sampled. */
const unsampledSpan = (traceparent: string) => {
  const [, traceId, spanId] = traceparent.split("-")
  return Tracer.externalSpan({ traceId, spanId, sampled: false })
}

/** A request's trace: whether the hot routes may serve it, the `traceparent` its record carries, the caller's span. */
interface Trace {
  readonly ok: boolean
  readonly traceparent: string | null
  readonly caller: Option.Option<Tracer.ExternalSpan>
}

/** The trace of a request that carries none, with tracing off: nothing to follow, nothing to make up. */
const UNTRACED: Trace = { ok: true, traceparent: null, caller: Option.none() }

/** `f` for its first call only: a deadline and a late answer must not both respond. */
const once = <A>(f: (a: A) => void) => {
  let called = false
  return (a: A) => {
    if (called) return
    called = true
    f(a)
  }
}

/**
 * `serve` takes `request` when it is a hot route on its happy path, and answers
 * true; false leaves it to the app. A request whose body was read is given to
 * `handOver`, rebuilt, when it turns out not to be plainly fine.
 */
export class HotRoutes extends Context.Service<HotRoutes, FastPath>()("strata/records/HotRoutes") {
  static readonly layer: Layer.Layer<
    HotRoutes,
    never,
    | HttpConfig
    | LimitsConfig
    | TelemetryConfig
    | VerifiedKeys
    | RateLimits
    | RecordCache
    | RecordWriter
    | Admission
    | StreamSchemas
  > = Layer.effect(
    HotRoutes,
    Effect.gen(function*() {
      const config = { ...(yield* HttpConfig), ...(yield* LimitsConfig), ...(yield* TelemetryConfig) }
      const keys = yield* VerifiedKeys
      const limiter = yield* RateLimits
      const cache = yield* RecordCache
      const writer = yield* RecordWriter
      const admission = yield* Admission
      const schemas = yield* StreamSchemas
      const context = yield* Effect.context<never>()
      // Key expiry is judged on the Clock the layer is built with: a sync read, no Effect per request.
      const clock = yield* Clock.clockWith(Effect.succeed)
      const tracing = Context.get(context, References.TracerEnabled)
      const ratio = samplingRatio(config)
      const logging = config.accessLog &&
        LogLevel.isGreaterThanOrEqualTo("Info", Context.get(context, References.MinimumLogLevel))
      const defaultLimit = { rps: config.rateLimitRps, burst: config.rateLimitBurst }
      const deadlineMs = Duration.toMillis(config.requestTimeout)

      /**
       * The caller's trace context as the app would carry it: with tracing off,
       * the caller's `traceparent`; with tracing on, only requests that start an
       * unsampled trace come here (sampled ones are the app's to trace).
       */
      const traceOf = (request: IncomingMessage): Trace => {
        const traced = request.headers.traceparent !== undefined || request.headers.b3 !== undefined
        if (!tracing && !traced) return UNTRACED
        const caller = traced
          ? HttpTraceContext.fromHeaders(Headers.fromInput(request.headers as Record<string, string>))
          : Option.none<Tracer.ExternalSpan>()
        if (!tracing) {
          return {
            ok: true,
            traceparent: Option.match(caller, { onNone: () => null, onSome: traceparentOf }),
            caller
          }
        }
        if (Option.isSome(caller) || Math.random() < ratio) return { ok: false, traceparent: null, caller }
        // What an unsampled root span of the app would carry: fresh ids, not sampled.
        return {
          ok: true,
          traceparent: `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-00`,
          caller
        }
      }

      // Every read's answer goes out with the others of its turn of the event loop (AnswerBurst.ts).
      // One whose writing throws (a bug) is logged and its connection cut, rather than left hanging.
      const burst = makeAnswerBurst((error, response) => {
        response.destroy()
        Effect.runForkWith(context)(Effect.logError("Writing an answer failed", error))
      })

      // Each hot route's duration series, looked up once.
      const getRoute = routeRecorder("GET", "/data/{id}", context)
      const postRoute = routeRecorder("POST", "/data", context)

      const finished = (
        recorder: typeof getRoute,
        trace: Trace,
        status: number,
        start: number,
        requestId: string
      ) => {
        const seconds = (performance.now() - start) / 1000
        recorder.ended(status, seconds)
        if (logging) {
          const outcome: RequestOutcome = { method: recorder.method, route: recorder.route, status, seconds, requestId }
          // As the app logs it: under the caller's trace, when it sent one.
          const line = logAccess(outcome)
          Effect.runSyncWith(context)(
            Option.isSome(trace.caller) ? Effect.withParentSpan(line, trace.caller.value) : line
          )
        }
      }

      /** The key of a request when it is cached and good for `scope`. */
      const keyFor = (request: IncomingMessage, scope: "records:read" | "records:write") => {
        const match = BEARER.exec(request.headers.authorization ?? "")
        if (match === null) return undefined
        const key = keys.peek(match[1])
        return key != null && verdictOf(key, scope, clock.currentTimeMillisUnsafe()) === "ok" ? key : undefined
      }

      /**
       * A record's answer, as the app's `get` handler gives it (RecordHeaders.ts): 200 with
       * the body, or 304. One object literal, no spreads: this runs for every cached read.
       */
      const sendRecord = (
        request: IncomingMessage,
        response: ServerResponse,
        id: string,
        body: string,
        outcome: CacheOutcome,
        requestId: string,
        limit: BucketLimit,
        decision: BucketDecision
      ): number => {
        const etag = `"${id}"`
        const ifNoneMatch = request.headers["if-none-match"]
        const status = ifNoneMatch !== undefined && matchesEtag(ifNoneMatch, etag) ? 304 : 200
        const headers: Record<string, string> = {
          etag,
          "cache-control": RECORD_CACHE_CONTROL,
          "cache-status": cacheStatusOf(outcome),
          "x-request-id": requestId,
          "ratelimit-policy": rateLimitPolicy(limit),
          ratelimit: rateLimitState(decision)
        }
        if (status === 200) {
          headers["content-type"] = "application/json"
          headers["content-length"] = String(Buffer.byteLength(body))
        }
        response.writeHead(status, headers)
        response.end(status === 200 ? body : undefined)
        return status
      }

      const serveGet = (request: IncomingMessage, response: ServerResponse, rawId: string): boolean => {
        const start = performance.now()
        const key = keyFor(request, "records:read")
        const trace = traceOf(request)
        if (key === undefined || !trace.ok) return false
        const id = rawId.toLowerCase()
        const body = cache.peek(key.tenant, id)
        // Not a UUIDv7: no record can have this id; the app says so.
        if (body === undefined && recordIdTime(id) === undefined) return false
        const limit = key.rateLimit ?? defaultLimit
        if (!admission.enter()) return false
        const decision = limiter.takeLeased(key.id, limit)
        if (decision === undefined) {
          admission.leave()
          return false
        }
        keys.markUsed(key.id)
        requestStarted()
        const requestId = requestIdOf(headerOf(request, "x-request-id"))
        if (body !== undefined) {
          cache.countHit()
          burst(response, () => {
            const status = sendRecord(request, response, id, body, "hit", requestId, limit, decision)
            admission.leave()
            finished(getRoute, trace, status, start, requestId)
          })
          return true
        }
        // Not in process: Redis, then the database, as the app reads it.
        const answer = once(
          (exit: Exit.Exit<{ answer: Option.Option<string>; cache: CacheOutcome } | undefined, unknown>) =>
            burst(response, () => {
              admission.leave()
              let status: number
              if (Exit.isSuccess(exit) && exit.value !== undefined && Option.isSome(exit.value.answer)) {
                status = sendRecord(
                  request,
                  response,
                  id,
                  exit.value.answer.value,
                  exit.value.cache,
                  requestId,
                  limit,
                  decision
                )
              } else {
                const problem = Exit.isFailure(exit)
                  ? problemOf(exit.cause)
                  : exit.value === undefined
                  ? pastDeadline()
                  : new NotFound({ detail: `No record ${rawId}` })
                status = sendProblem(response, problem, rateLimitHeaders(limit, decision), requestId)
              }
              finished(getRoute, trace, status, start, requestId)
            })
        )
        const deadline = setTimeout(() => answer(Exit.succeed(undefined)), deadlineMs)
        // Its Redis and database spans belong to this request's (unsampled) trace, not to roots of their own.
        const read = tracing && trace.traceparent !== null
          ? Effect.withParentSpan(cache.findById(key.tenant, id), unsampledSpan(trace.traceparent))
          : cache.findById(key.tenant, id)
        Effect.runCallbackWith(context)(read, {
          onExit: (exit) => {
            clearTimeout(deadline)
            answer(exit)
          }
        })
        return true
      }

      /** A problem as the app renders it (request id in the body), with `headers` added. */
      const sendProblem = (
        response: ServerResponse,
        problem: HttpServerRespondable.Respondable,
        headers: Record<string, string>,
        requestId: string
      ): number => {
        const rendered = Effect.runSync(HttpServerRespondable.toResponse(problem))
        const finished = finish(HttpServerResponse.setHeaders(rendered, headers), requestId)
        send(response, finished)
        return finished.status
      }

      const servePost = (request: IncomingMessage, response: ServerResponse, handOver: HandOver): boolean => {
        const start = performance.now()
        const contentType = request.headers["content-type"]
        if (
          request.headers["idempotency-key"] !== undefined || !isJsonContentType(contentType) || !isUtf8(contentType!)
        ) return false
        if (Number(request.headers["content-length"] ?? 0) > config.maxBodyBytes) return false
        const key = keyFor(request, "records:write")
        if (key === undefined) return false
        const trace = traceOf(request)
        if (!trace.ok || !admission.enter()) return false
        requestStarted()
        const chunks: Array<Buffer> = []
        let size = 0
        let done = false
        let headers: Record<string, string> = {}
        let dataText = ""
        let requestId: string | undefined
        const idOfRequest = () => requestId ??= requestIdOf(headerOf(request, "x-request-id"))
        // REQUEST_TIMEOUT counts from here, the body's arrival included, as in the app:
        // past it the answer is a 503 (a write under way may still commit).
        const deadline = setTimeout(() => {
          done = true
          answer(Exit.succeed(undefined))
        }, deadlineMs)
        // Not through the burst: a commit's answers already go out back to back as it ends,
        // and holding them to the end of the turn measured 0.94× and 0.85× the POSTs (6 and 5 pairs).
        const answer = once((exit: Exit.Exit<Arr.NonEmptyReadonlyArray<StoredRecord> | undefined, unknown>) => {
          clearTimeout(deadline)
          admission.leave()
          let status: number
          if (Exit.isSuccess(exit) && exit.value !== undefined) {
            const [stored] = exit.value
            const text = recordText(stored, dataText)
            cache.remember(key.tenant, [{ id: stored.id, text }])
            status = 201
            response.writeHead(201, {
              location: `/data/${stored.id}`,
              "content-type": "application/json",
              "content-length": String(Buffer.byteLength(text)),
              "x-request-id": idOfRequest(),
              "ratelimit-policy": headers["ratelimit-policy"],
              ratelimit: headers.ratelimit
            })
            response.end(text)
          } else {
            const problem = Exit.isSuccess(exit) ? pastDeadline() : problemOf(exit.cause)
            status = sendProblem(response, problem, headers, idOfRequest())
          }
          finished(postRoute, trace, status, start, idOfRequest())
        })
        const passOn = (body: Buffer) => {
          clearTimeout(deadline)
          admission.leave()
          requestPassedOn()
          handOver(replayOf(request, body))
        }
        // A body of one chunk (the usual small record) is used as it came, not copied.
        request.on("data", (chunk: Buffer) => {
          if (done) return
          chunks.push(chunk)
          size += chunk.length
          // Over the limit: the app answers 413 from what arrived so far.
          if (size > config.maxBodyBytes) {
            done = true
            passOn(Buffer.concat(chunks, size))
          }
        })
        request.on("error", () => {
          if (done) return
          done = true
          clearTimeout(deadline)
          admission.leave()
          postRoute.ended(499, 0)
        })
        request.on("end", () => {
          if (done) return
          done = true
          const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)
          const record = recordOf(body, key.tenant, trace.traceparent)
          const limit = key.rateLimit ?? defaultLimit
          // The token is taken last, so a request handed over does not pay twice.
          const decision = record === undefined ? undefined : limiter.takeLeased(key.id, limit)
          if (record === undefined || decision === undefined) return passOn(body)
          keys.markUsed(key.id)
          headers = rateLimitHeaders(limit, decision)
          dataText = record.dataText
          writer.submit([record], answer)
        })
        return true
      }

      /** The row to store when the body is a plainly valid record; anything else is the app's to explain. */
      const recordOf = (body: Buffer, tenant: string, traceparent: string | null) => {
        try {
          const parsed = parseExact(utf8.decode(body))
          if (parsed._tag !== "Parsed" || !isNewRecord(parsed.value)) return undefined
          // The stream's schema when this process knows it is current (else the app looks it
          // up); a record that breaks it is the app's to answer with its 400.
          const schema = schemas.peek(tenant, parsed.value.stream)
          if (schema === undefined || (schema !== null && !schema.accepts(parsed.value.data))) return undefined
          const row = prepareRecord(
            tenant,
            parsed.value,
            Date.now(),
            config.maxRecordBytes,
            traceparent,
            "",
            schema?.version ?? null
          )
          return row._tag === "Success" ? row.success : undefined
        } catch {
          return undefined
        }
      }

      /** As the app answers a failed write: a database that is down is a 503, anything else a 500. */
      const problemOf = (cause: Cause.Cause<unknown>) => {
        const error = Cause.findErrorOption(cause)
        if (Option.isSome(error) && isTransient(error.value)) {
          Effect.runForkWith(context)(Effect.logWarning("Database unavailable", error.value.message))
          return databaseUnavailable()
        }
        Effect.runForkWith(context)(Effect.logError("Unhandled failure", cause))
        return internalError()
      }

      return HotRoutes.of({
        serve: (request, response, handOver) => {
          if (request.method === "GET") {
            const match = RECORD_PATH.exec(request.url!)
            return match !== null && serveGet(request, response, match[1])
          }
          return request.method === "POST" && request.url === "/data" && servePost(request, response, handOver)
        }
      })
    })
  )
}
