/**
 * The two hot routes on their happy path, served straight from Node's
 * `request` event: `GET /data/{id}` (from the in-process answers, or read
 * through Redis and the database as the app does), and `POST /data` without an
 * `Idempotency-Key`. Every other request, and every request here that is not
 * plainly fine (no or unknown key, a key not cached yet, a lease of rate-limit
 * tokens used up, a body that does not validate, a stream whose current schema
 * this process does not know or whose schema the record breaks, an id no record
 * can have, a sampled trace), goes to the HttpApi app as it came — a POST's
 * body as it was read — and gets the app's answer, problems included.
 *
 * Why: through HttpApi a cached read costs a fiber, a middleware chain and a
 * Schema encode; here it costs a map lookup and a socket write (docs/PERFORMANCE.md).
 *
 * This is an adapter and decides nothing of its own: the key's verdict
 * (VerifiedKeys.verdictOf), the rate limit and its headers (RateLimits,
 * Authentication.rateLimitHeaders), admission and the deadline (Admission),
 * the request id (RequestId.requestIdOf), the record's answer (RecordAnswers),
 * the 201 (Answer.created), what a commit leaves in the cache
 * (Records.rememberCommitted), problems and the 503 of a database failure
 * (Problems), metrics and the access line (RequestBookkeeping) are the ones
 * the app uses. Reads and log lines run in fibers owned by the layer's scope.
 */
import { isNewRecord, NotFound } from "@strata/domain"
import { Clock, Context, Duration, Effect, Exit, FiberSet, Layer, Option, References, Tracer } from "effect"
import { Headers, HttpTraceContext } from "effect/http"
import { randomBytes } from "node:crypto"
import { IncomingMessage, type ServerResponse } from "node:http"
import { rateLimitHeaders } from "../auth/Authentication.ts"
import { RateLimits } from "../auth/RateLimits.ts"
import { verdictOf, VerifiedKeys } from "../auth/VerifiedKeys.ts"
import { HttpConfig } from "../platform/config/HttpConfig.ts"
import { LimitsConfig } from "../platform/config/LimitsConfig.ts"
import { TelemetryConfig } from "../platform/config/TelemetryConfig.ts"
import { Admission, pastDeadline } from "../platform/http/Admission.ts"
import { created, writeAnswer } from "../platform/http/Answer.ts"
import { makeAnswerBurst } from "../platform/http/AnswerBurst.ts"
import { isJsonContentType, isUtf8, rememberParsedUnsafe } from "../platform/http/JsonBody.ts"
import type { FastPath, HandOver } from "../platform/http/NodeServer.ts"
import { type Problem, problemOfFailure, renderProblem, writeResponse } from "../platform/http/Problems.ts"
import { requestIdOf } from "../platform/http/RequestId.ts"
import { parseExact } from "../platform/json/ExactJson.ts"
import { RequestBookkeeping } from "../platform/observability/RequestBookkeeping.ts"
import { samplingRatio, traceparentOf } from "../platform/observability/Tracing.ts"
import { StreamSchemas } from "../schemas/StreamSchemas.ts"
import { Positions } from "./Positions.ts"
import { prepareRecord } from "./Prepare.ts"
import { recordAnswer } from "./RecordAnswers.ts"
import { type CacheOutcome, RecordCache } from "./RecordCache.ts"
import { recordIdTime } from "./RecordId.ts"
import { rememberCommitted } from "./Records.ts"
import { RecordWriter, type Written } from "./RecordWriter.ts"

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

/** The span of a `traceparent` this request made up for itself: not sampled. */
const unsampledSpan = (traceparent: string) => {
  const [, traceId, spanId] = traceparent.split("-")
  return Tracer.externalSpan({ traceId, spanId, sampled: false })
}

/** A request's trace: whether the hot routes may serve it, the `traceparent` its record carries, the caller's span. */
interface Trace {
  readonly ok: boolean
  readonly traceparent: string | null
  readonly caller: Tracer.ExternalSpan | undefined
}

/** The trace of a request that carries none, with tracing off: nothing to follow, nothing to make up. */
const UNTRACED: Trace = { ok: true, traceparent: null, caller: undefined }

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
    | RequestBookkeeping
    | Positions
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
      const bookkeeping = yield* RequestBookkeeping
      const positions = yield* Positions
      // Reads past this process's cache and log lines run here, owned by the layer's scope.
      const runInBackground = yield* FiberSet.makeRuntime<never>()
      // Key expiry is judged on the Clock the layer is built with: a sync read, no Effect per request.
      const clock = yield* Clock.clockWith(Effect.succeed)
      const tracing = yield* References.TracerEnabled
      const ratio = samplingRatio(config)
      const defaultLimit = { rps: config.rateLimitRps, burst: config.rateLimitBurst }
      const deadlineMs = Duration.toMillis(config.requestTimeout)
      const getBook = bookkeeping.route("GET", "/data/{id}")
      const postBook = bookkeeping.route("POST", "/data")

      /**
       * The caller's trace context as the app would carry it: with tracing off,
       * the caller's `traceparent`; with tracing on, only requests that start an
       * unsampled trace come here (sampled ones are the app's to trace).
       */
      const traceOf = (request: IncomingMessage): Trace => {
        const traced = request.headers.traceparent !== undefined || request.headers.b3 !== undefined
        if (!tracing && !traced) return UNTRACED
        const caller = traced
          ? Option.getOrUndefined(
            HttpTraceContext.fromHeaders(Headers.fromInput(request.headers as Record<string, string>))
          )
          : undefined
        if (!tracing) return { ok: true, traceparent: caller === undefined ? null : traceparentOf(caller), caller }
        if (caller !== undefined || Math.random() < ratio) return { ok: false, traceparent: null, caller }
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
        runInBackground(Effect.logError("Writing an answer failed", error))
      })

      /** The key of a request when it is cached and good for `scope`. */
      const keyFor = (request: IncomingMessage, scope: "records:read" | "records:write") => {
        const match = BEARER.exec(request.headers.authorization ?? "")
        if (match === null) return undefined
        const key = keys.peekUnsafe(match[1])
        return key != null && verdictOf(key, scope, clock.currentTimeMillisUnsafe()) === "ok" ? key : undefined
      }

      /** The problem of a failed read or write, logged as the app logs it. */
      const problemOf = (cause: Parameters<typeof problemOfFailure>[0]): Problem => {
        const { log, problem } = problemOfFailure(cause)
        runInBackground(log)
        return problem
      }

      const serveGet = (request: IncomingMessage, response: ServerResponse, rawId: string): boolean => {
        // A read that names a position (read your writes) has it checked by the app.
        if (request.headers["strata-position"] !== undefined) return false
        const key = keyFor(request, "records:read")
        const trace = traceOf(request)
        if (key === undefined || !trace.ok) return false
        const id = rawId.toLowerCase()
        const body = cache.peekUnsafe(key.tenant, id)
        // Not a UUIDv7: no record can have this id; the app says so.
        if (body === undefined && recordIdTime(id) === undefined) return false
        const limit = key.rateLimit ?? defaultLimit
        if (!admission.enterUnsafe()) return false
        const decision = limiter.takeLeasedUnsafe(key.id, limit)
        if (decision === undefined) {
          admission.leaveUnsafe()
          return false
        }
        keys.markUsedUnsafe(key.id)
        const start = getBook.started()
        const requestId = requestIdOf(headerOf(request, "x-request-id"))
        const extra = () => {
          const headers = rateLimitHeaders(limit, decision)
          headers["x-request-id"] = requestId
          return headers
        }
        if (body !== undefined) {
          cache.countHitUnsafe()
          burst(response, () => {
            const answer = recordAnswer(id, body, "hit", request.headers["if-none-match"])
            const status = writeAnswer(response, answer, extra())
            admission.leaveUnsafe()
            getBook.ended(status, start, requestId, trace.caller)
          })
          return true
        }
        // Not in process: Redis, then the database, as the app reads it.
        const answer = once(
          (exit: Exit.Exit<{ answer: Option.Option<string>; cache: CacheOutcome } | undefined, unknown>) =>
            burst(response, () => {
              admission.leaveUnsafe()
              let status: number
              if (Exit.isSuccess(exit) && exit.value !== undefined && Option.isSome(exit.value.answer)) {
                const found = recordAnswer(
                  id,
                  exit.value.answer.value,
                  exit.value.cache,
                  request.headers["if-none-match"]
                )
                status = writeAnswer(response, found, extra())
              } else {
                const problem = Exit.isFailure(exit)
                  ? problemOf(exit.cause)
                  : exit.value === undefined
                  ? pastDeadline()
                  : new NotFound({ detail: `No record ${rawId}` })
                status = writeResponse(response, renderProblem(problem, requestId, rateLimitHeaders(limit, decision)))
              }
              getBook.ended(status, start, requestId, trace.caller)
            })
        )
        const deadline = setTimeout(() => answer(Exit.succeed(undefined)), deadlineMs)
        // Its Redis and database spans belong to this request's (unsampled) trace, not to roots of their own.
        const read = tracing && trace.traceparent !== null
          ? Effect.withParentSpan(cache.findById(key.tenant, id), unsampledSpan(trace.traceparent))
          : cache.findById(key.tenant, id)
        runInBackground(read).addObserver((exit) => {
          clearTimeout(deadline)
          answer(exit)
        })
        return true
      }

      const servePost = (request: IncomingMessage, response: ServerResponse, handOver: HandOver): boolean => {
        const contentType = request.headers["content-type"]
        if (
          request.headers["idempotency-key"] !== undefined || request.headers["content-encoding"] !== undefined ||
          !isJsonContentType(contentType) || !isUtf8(contentType!)
        ) return false
        if (Number(request.headers["content-length"] ?? 0) > config.maxBodyBytes) return false
        const key = keyFor(request, "records:write")
        if (key === undefined) return false
        const trace = traceOf(request)
        if (!trace.ok || !admission.enterUnsafe()) return false
        const start = postBook.started()
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
        // Not through the burst: a commit's answers already go out back to back as it ends.
        const answer = once((exit: Exit.Exit<Written | undefined, unknown>) => {
          clearTimeout(deadline)
          admission.leaveUnsafe()
          let status: number
          if (Exit.isSuccess(exit) && exit.value !== undefined) {
            const [{ id, text }] = rememberCommitted(cache, key.tenant, exit.value.records, [{ dataText }])
            headers["x-request-id"] = idOfRequest()
            const position = positions.encode(key.tenant, exit.value.position)
            status = writeAnswer(response, created(`/data/${id}`, text, position), headers)
          } else {
            const problem = Exit.isSuccess(exit) ? pastDeadline() : problemOf(exit.cause)
            status = writeResponse(response, renderProblem(problem, idOfRequest(), headers))
          }
          postBook.ended(status, start, idOfRequest(), trace.caller)
        })
        const passOn = (body: Buffer, parsed?: { readonly value: unknown }) => {
          clearTimeout(deadline)
          admission.leaveUnsafe()
          postBook.passedOn()
          const replay = replayOf(request, body)
          // Parsed here already: the app takes the value rather than parsing the body again.
          if (parsed !== undefined) rememberParsedUnsafe(replay, parsed.value)
          handOver(replay)
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
          admission.leaveUnsafe()
          postBook.ended(499, start, idOfRequest(), undefined)
        })
        request.on("end", () => {
          if (done) return
          done = true
          const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)
          const parsed = parsedOf(body)
          const record = parsed === undefined ? undefined : recordOf(parsed.value, key.tenant, trace.traceparent)
          const limit = key.rateLimit ?? defaultLimit
          // The token is taken last, so a request handed over does not pay twice.
          const decision = record === undefined ? undefined : limiter.takeLeasedUnsafe(key.id, limit)
          if (record === undefined || decision === undefined) return passOn(body, parsed)
          keys.markUsedUnsafe(key.id)
          headers = rateLimitHeaders(limit, decision)
          dataText = record.dataText
          writer.submitUnsafe([record], answer)
        })
        return true
      }

      /** The body as the app would parse it (readJsonBody), when it parses; anything else is the app's to explain. */
      const parsedOf = (body: Buffer): { readonly value: unknown } | undefined => {
        try {
          const parsed = parseExact(utf8.decode(body))
          return parsed._tag === "Parsed" ? { value: parsed.value } : undefined
        } catch {
          return undefined
        }
      }

      /** The row to store when the body is a plainly valid record; anything else is the app's to explain. */
      const recordOf = (value: unknown, tenant: string, traceparent: string | null) => {
        if (!isNewRecord(value)) return undefined
        try {
          // The stream's schema when this process knows it is current (else the app looks it
          // up); a record that breaks it is the app's to answer with its 400.
          const schema = schemas.peekUnsafe(tenant, value.stream)
          if (schema === undefined || (schema !== null && !schema.accepts(value.data))) return undefined
          const row = prepareRecord(
            tenant,
            value,
            Date.now(),
            config.maxRecordBytes,
            traceparent,
            "",
            schema?.version ?? null
          )
          return row._tag === "Success" ? row.success : undefined
        } catch {
          // Whatever went wrong here (in a Node callback, where a throw would end the process) is the app's to answer.
          return undefined
        }
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
