/**
 * The change feed over HTTP (README: Change feed): `GET /changes` and
 * `GET /streams/{stream}/changes`, one JSON page, or with
 * `Accept: text/event-stream` a live tail of Server-Sent Events. What the
 * routes do is ChangeFeed's; here the request is read and the answer written.
 */
import { Api, Principal } from "@strata/domain"
import { Effect, Stream } from "effect"
import { HttpServerResponse } from "effect/http"
import { HttpApiBuilder } from "effect/http-api"
import { isEventStream } from "../platform/http/Admission.ts"
import { unavailableOnTransient } from "../platform/http/Problems.ts"
import { queryFilters } from "../records/FilterQuery.ts"
import { Records } from "../records/Records.ts"
import { ChangeFeed, type FeedRequest } from "./ChangeFeed.ts"

const JSON_TYPE = "application/json"
/** Not cached, not buffered by a proxy in front (nginx reads X-Accel-Buffering), not transformed. */
const STREAM_HEADERS = { "cache-control": "no-cache, no-transform", "x-accel-buffering": "no" }
const DEFAULT_LIMIT = 100

interface FeedHeaders {
  readonly accept?: string
  readonly "last-event-id"?: string
  readonly "strata-position"?: string
}

export const ChangesHandlers = HttpApiBuilder.group(
  Api,
  "changes",
  Effect.fn(function*(handlers) {
    const feed = yield* ChangeFeed
    const records = yield* Records

    const serve = (
      headers: FeedHeaders,
      query: { readonly after?: string; readonly limit?: number },
      streams: ReadonlyArray<string> | undefined,
      source: object,
      url: string
    ) =>
      Effect.gen(function*() {
        const principal = yield* Principal
        const live = isEventStream(headers.accept)
        // A reconnecting EventSource sends the id of the last event it got: that wins over after=.
        const resumed = live ? headers["last-event-id"] : undefined
        const request: FeedRequest = {
          streams,
          after: resumed ?? query.after,
          afterPath: resumed !== undefined ? "last-event-id" : "after",
          limit: query.limit ?? DEFAULT_LIMIT,
          readYourWrites: headers["strata-position"],
          filters: yield* queryFilters(url)
        }
        for (const stream of streams ?? []) yield* records.checkFilters(principal.tenant, stream, request.filters ?? [])
        if (!live) {
          return HttpServerResponse.text(yield* feed.page(principal.tenant, request), { contentType: JSON_TYPE })
        }
        const events = yield* feed.tail({ tenant: principal.tenant, keyId: principal.keyId }, request, source)
        return HttpServerResponse.stream(Stream.encodeText(events), {
          contentType: "text/event-stream",
          headers: STREAM_HEADERS
        })
      }).pipe(Effect.catchTag("DbError", unavailableOnTransient))

    return handlers
      .handle("tenant", ({ headers, query, request }) => {
        const streams = query.stream === undefined
          ? undefined
          : typeof query.stream === "string"
          ? [query.stream]
          : Array.from(new Set(query.stream))
        return serve(headers, query, streams, request.source, request.url)
      })
      .handle(
        "stream",
        ({ headers, params, query, request }) => serve(headers, query, [params.stream], request.source, request.url)
      )
  })
)
