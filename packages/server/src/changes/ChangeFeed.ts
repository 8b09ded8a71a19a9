/**
 * The change feed (README: Change feed): a tenant's records in commit order,
 * as pages (`page`) or as a live tail of Server-Sent Events (`tail`).
 *
 * Correctness comes from the database read alone (ChangeLog.read: only what
 * lies below the horizon, in (xid, n) order). Everything else is a hint that
 * says when to read: this process's commits (RecordWriter.onCommitUnsafe), and
 * otherwise a poll every FEED_POLL_INTERVAL. One loop per process (the waker)
 * asks the database which of the watched tenants' streams changed since its
 * last look, in one statement, so an idle subscription costs no query of its
 * own: it only moves its position to the new horizon.
 *
 * A tail never buffers without bound: it reads the next page only once the
 * previous one was taken by the connection (a queue of one chunk), so a slow
 * reader holds at most one page queued and one being written, and catches up
 * page by page. One that takes nothing for FEED_SLOW_CONSUMER_TIMEOUT is cut
 * off (strata_feed_slow_consumers_closed_total).
 */
import { type PositionExpired, RateLimited, type StoredRecord, type ValidationFailed } from "@strata/domain"
import { Cause, Context, Duration, Effect, Latch, Layer, Metric, Option, Queue, Ref, Schedule, Stream } from "effect"
import { IncomingMessage } from "node:http"
import { Lifecycle } from "../health/HealthHandlers.ts"
import { FeedConfig } from "../platform/config/FeedConfig.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import { ReadReplicas } from "../platform/sql/ReadReplicas.ts"
import { ChangeLog, comparePositions, type FeedPosition, laterOf } from "../records/ChangeLog.ts"
import { type Filter, matchesAll } from "../records/Filters.ts"
import { horizonNeeded, Positions } from "../records/Positions.ts"
import { RecordCache } from "../records/RecordCache.ts"
import { parseStored } from "../records/RecordRows.ts"
import { RecordStore } from "../records/RecordStore.ts"
import { RecordWriter } from "../records/RecordWriter.ts"

/** What a feed request asks, as the handlers read it. */
export interface FeedRequest {
  readonly streams: ReadonlyArray<string> | undefined
  /** `after=` (or, for a tail, Last-Event-ID): a position, `earliest` or `now`; `earliest` when absent. */
  readonly after: string | undefined
  /** Which parameter `after` came from, for the 400 that names it. */
  readonly afterPath: string
  readonly limit: number
  /** Read your writes: the page includes everything up to this position. */
  readonly readYourWrites: string | undefined
  /** Filters on `data` (README: Filters): a page reads `limit` changes and answers those that pass. */
  readonly filters?: ReadonlyArray<Filter> | undefined
}

/** Who subscribes, for the caps. */
export interface Subscriber {
  readonly tenant: string
  readonly keyId: string
}

/** Changes a tail reads per page: one page is what a slow reader can hold queued. */
export const TAIL_PAGE = 100
/** What a client is told to wait before it reconnects after a planned close (`retry:`). */
export const RETRY_MS = 2000
/** How often a page that must include a given position (read your writes) looks at the horizon again. */
const READ_YOUR_WRITES_POLL = Duration.millis(5)
/** The least time between two looks of the waker, however often this process commits. */
const MIN_WAKE_GAP = Duration.millis(20)

export const feedConnections = Metric.gauge("strata_feed_connections", {
  description: "Server-Sent Events feed connections open on this process"
})
export const feedSlowClosed = Metric.counter("strata_feed_slow_consumers_closed_total", {
  description: "Feed connections closed because the client took nothing for FEED_SLOW_CONSUMER_TIMEOUT"
})
export const feedRefused = Metric.counter("strata_feed_connections_refused_total", {
  description: "Feed connections refused with a 429 (FEED_MAX_STREAMS, FEED_MAX_STREAMS_PER_KEY)"
})
export const feedLag = Metric.gauge("strata_feed_lag_seconds", {
  description:
    "How far the feed's horizon lags: the age of the oldest transaction still running that holds it back, as this process's waker saw it (0 when nothing waits)"
})
export const feedDelivery = Metric.histogram("strata_feed_delivery_seconds", {
  description: "From a record's ingestion to its event being handed to a feed connection",
  boundaries: [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30]
})
export const feedBufferedBytes = Metric.gauge("strata_feed_buffered_bytes", {
  description: "Bytes of feed events this process holds for its connections (queued and in the sockets' buffers)"
})

/** The waker's news for a subscription: which streams changed in [since, horizon). */
interface News {
  /** Undefined: unknown (the first look, or a failed one), so read. */
  readonly since: bigint | undefined
  readonly horizon: bigint
  readonly touched: ReadonlySet<string>
  readonly closing: boolean
}

interface Subscription {
  readonly tenant: string
  readonly streams: ReadonlyArray<string> | undefined
  readonly wake: (news: News) => void
}

const touchKey = (tenant: string, stream: string) => `${tenant}\u0000${stream}`

/** Two pieces of news as one: everything either says. */
const merge = (a: News | undefined, b: News): News =>
  a === undefined ? b : {
    since: a.since === undefined || b.since === undefined ? undefined : a.since < b.since ? a.since : b.since,
    horizon: a.horizon > b.horizon ? a.horizon : b.horizon,
    touched: new Set([...a.touched, ...b.touched]),
    closing: a.closing || b.closing
  }

/** One change as the feed answers it: the record as GET /data/{id} answers it, with its position. */
const changeText = (answer: string, position: string) => `${answer.slice(0, -1)},"position":"${position}"}`

const sseRecord = (position: string, text: string) => `event: record\nid: ${position}\ndata: ${text}\n\n`
const sseHeartbeat = (position: string) => `event: heartbeat\nid: ${position}\ndata: {"position":"${position}"}\n\n`

interface Page {
  readonly changes: ReadonlyArray<{ readonly position: string; readonly text: string; readonly ingestedAt: number }>
  readonly next: FeedPosition
  readonly full: boolean
}

export class ChangeFeed extends Context.Service<ChangeFeed, {
  /** One page as JSON text: `{"changes":[…],"nextPosition":"…"}`. */
  readonly page: (
    tenant: string,
    request: FeedRequest
  ) => Effect.Effect<string, DbError | ValidationFailed | PositionExpired>
  /**
   * A live tail as Server-Sent Events text, from the position the request
   * names (checked before anything is sent). `source` is the request's
   * underlying object: on Node, the connection a consumer that stopped reading
   * is cut off through.
   */
  readonly tail: (
    subscriber: Subscriber,
    request: FeedRequest,
    source: object
  ) => Effect.Effect<Stream.Stream<string>, DbError | ValidationFailed | PositionExpired | RateLimited>
}>()("strata/changes/ChangeFeed") {
  static readonly layer: Layer.Layer<
    ChangeFeed,
    never,
    ChangeLog | Positions | RecordStore | RecordCache | RecordWriter | FeedConfig | Lifecycle | ReadReplicas
  > = Layer.effect(
    ChangeFeed,
    Effect.gen(function*() {
      const log = yield* ChangeLog
      const positions = yield* Positions
      const store = yield* RecordStore
      const cache = yield* RecordCache
      const writer = yield* RecordWriter
      const config = yield* FeedConfig
      const lifecycle = yield* Lifecycle
      const replicas = yield* ReadReplicas

      /** Where a request starts: after its position, `earliest` (the default) or `now`. */
      const startOf = (tenant: string, after: string | undefined, path: string) =>
        after === undefined || after === "earliest"
          ? positions.earliest
          : after === "now"
          ? Effect.map(log.horizon, ({ horizon }): FeedPosition => ({ xid: horizon, n: 0 }))
          : positions.check(tenant, after, path)

      /** Up to `limit` changes after `after`, each with its record (one no longer kept is left out). */
      const readPage = (
        tenant: string,
        streams: ReadonlyArray<string> | undefined,
        after: FeedPosition,
        limit: number,
        filters: ReadonlyArray<Filter> = []
      ) =>
        Effect.gen(function*() {
          const { horizon, rows } = yield* log.read({ tenant, streams, after, limit })
          // The answers this process holds (its own recent writes) first, then the database by id.
          const answers: Array<string | undefined> = rows.map((row) => cache.peekUnsafe(tenant, row.recordId))
          const missing = rows.flatMap((row, i) => answers[i] === undefined ? [{ tenant, id: row.recordId }] : [])
          if (missing.length > 0) {
            const found = yield* store.findByIds(missing)
            let at = 0
            for (let i = 0; i < rows.length; i++) {
              if (answers[i] !== undefined) continue
              const record = found[at++]
              if (Option.isSome(record)) answers[i] = record.value.text
            }
          }
          const changes: Array<Page["changes"][number]> = []
          rows.forEach((row, i) => {
            const answer = answers[i]
            // Dropped by RETENTION with its partition: no longer a record to show.
            if (answer === undefined) return
            if (filters.length > 0 && !matchesAll(filters, parseStored<StoredRecord>(answer).data)) return
            const position = positions.encode(tenant, row.position)
            changes.push({ position, text: changeText(answer, position), ingestedAt: ingestedAtOf(answer) })
          })
          const full = rows.length === limit
          const next = full ? rows[rows.length - 1].position : laterOf(after, { xid: horizon, n: 0 })
          return { changes, next, full } satisfies Page
        })

      /** Read your writes: waits (within the request's deadline) until the horizon has passed `position`. */
      const awaitPosition = (position: FeedPosition) =>
        log.horizon.pipe(
          Effect.repeat({
            until: ({ horizon }) => horizon > position.xid,
            schedule: Schedule.spaced(READ_YOUR_WRITES_POLL)
          })
        )

      const page = (tenant: string, request: FeedRequest) =>
        Effect.gen(function*() {
          const start = yield* startOf(tenant, request.after, request.afterPath)
          const wanted = request.readYourWrites === undefined
            ? undefined
            : yield* positions.check(tenant, request.readYourWrites, "strata-position")
          // A page on a replica (README: Read replicas) serves what that replica has
          // made final, so it never skips: behind, it is shorter, and ends where it was.
          const { changes, next } = yield* replicas.read(
            Effect.gen(function*() {
              if (wanted !== undefined) yield* awaitPosition(wanted)
              return yield* readPage(tenant, request.streams, start, request.limit, request.filters)
            }),
            { need: wanted === undefined ? undefined : horizonNeeded(wanted) }
          )
          return `{"changes":[${changes.map((c) => c.text).join(",")}],"nextPosition":"${
            positions.encode(tenant, next)
          }"}`
        })

      // --- The waker: one loop per process, while any tail is open.
      const subscriptions = new Set<Subscription>()
      const perKey = new Map<string, number>()
      const hint = Latch.makeUnsafe(false)
      const someone = Latch.makeUnsafe(false)
      yield* Effect.acquireRelease(
        Effect.sync(() => writer.onCommitUnsafe(() => hint.openUnsafe())),
        (remove) => Effect.sync(remove)
      )
      // The newest transaction id seen at each look, with when: the lag is the age of the
      // oldest look whose transactions the horizon has not passed yet.
      const looks: Array<{ readonly next: bigint; readonly at: number }> = []
      const waker = Effect.gen(function*() {
        let since: bigint | undefined
        for (;;) {
          if (subscriptions.size === 0) {
            since = undefined
            yield* Metric.update(feedLag, 0)
            someone.closeUnsafe()
            yield* someone.await
          }
          yield* Effect.raceFirst(hint.await, Effect.sleep(config.feedPollInterval))
          hint.closeUnsafe()
          const closing = yield* Ref.get(lifecycle.shuttingDown)
          const tenants = Array.from(new Set(Array.from(subscriptions, (s) => s.tenant)))
          const look = since === undefined
            ? Effect.map(log.horizon, (h) => ({ ...h, touched: [] }))
            : log.activity(tenants, since)
          const news = yield* Effect.result(look)
          if (news._tag === "Failure") {
            yield* Effect.logWarning("The change feed could not look for news; tails will read", news.failure.message)
            for (const s of subscriptions) s.wake({ since: undefined, horizon: 0n, touched: new Set(), closing })
            since = undefined
            yield* Effect.sleep(config.feedPollInterval)
            continue
          }
          const { horizon, next, touched } = news.success
          const now = Date.now()
          looks.push({ next, at: now })
          while (looks.length > 1 && looks[0].next <= horizon && looks[1].next <= horizon) looks.shift()
          const lagging = looks.find((l) => l.next > horizon)
          yield* Metric.update(feedLag, lagging === undefined ? 0 : (now - lagging.at) / 1000)
          if (looks.length > 1000) looks.splice(0, looks.length - 1000)
          const set = new Set(touched.map((t) => touchKey(t.tenant, t.stream)))
          for (const s of subscriptions) s.wake({ since, horizon, touched: set, closing })
          since = horizon
          yield* Effect.sleep(MIN_WAKE_GAP)
        }
      })
      yield* Effect.forkScoped(waker)

      const admit = (subscriber: Subscriber) =>
        Effect.suspend(() => {
          const mine = perKey.get(subscriber.keyId) ?? 0
          if (subscriptions.size >= config.feedMaxStreams || mine >= config.feedMaxStreamsPerKey) {
            return Effect.andThen(
              Metric.update(feedRefused, 1),
              Effect.fail(
                new RateLimited({
                  detail: mine >= config.feedMaxStreamsPerKey
                    ? `This key has ${mine} feed streams open on this server (FEED_MAX_STREAMS_PER_KEY).`
                    : "This server has as many feed streams open as it takes (FEED_MAX_STREAMS)."
                })
              )
            )
          }
          return Effect.void
        })

      const tail = (subscriber: Subscriber, request: FeedRequest, source: object) =>
        Effect.gen(function*() {
          const { tenant } = subscriber
          yield* admit(subscriber)
          const start = yield* startOf(tenant, request.after, request.afterPath)
          const slowMs = Duration.toMillis(config.feedSlowConsumerTimeout)
          const heartbeatMs = Duration.toMillis(config.feedHeartbeat)
          const socket = source instanceof IncomingMessage ? source.socket : undefined

          return Stream.callback<string>((queue) =>
            Effect.gen(function*() {
              let position = start
              let pending: News | undefined
              let queued = 0
              const woken = Latch.makeUnsafe(false)
              const subscription: Subscription = {
                tenant,
                streams: request.streams,
                wake: (news) => {
                  pending = merge(pending, news)
                  woken.openUnsafe()
                }
              }
              const buffered = () => queued + (socket?.writableLength ?? 0)
              yield* Effect.acquireRelease(
                Effect.sync(() => {
                  subscriptions.add(subscription)
                  perKey.set(subscriber.keyId, (perKey.get(subscriber.keyId) ?? 0) + 1)
                  someone.openUnsafe()
                }).pipe(Effect.andThen(Effect.suspend(() => Metric.update(feedConnections, subscriptions.size)))),
                () =>
                  Effect.sync(() => {
                    subscriptions.delete(subscription)
                    const left = (perKey.get(subscriber.keyId) ?? 1) - 1
                    if (left === 0) perKey.delete(subscriber.keyId)
                    else perKey.set(subscriber.keyId, left)
                  }).pipe(Effect.andThen(Effect.suspend(() => Metric.update(feedConnections, subscriptions.size))))
              )

              /** Hands a chunk to the connection; a client that takes nothing for the timeout is cut off. */
              const send = (chunk: string) =>
                Effect.gen(function*() {
                  queued = chunk.length
                  yield* Metric.update(feedBufferedBytes, buffered())
                  const taken = yield* Effect.timeoutOption(Queue.offer(queue, chunk), slowMs)
                  queued = 0
                  if (Option.isNone(taken)) {
                    yield* Metric.update(feedSlowClosed, 1)
                    yield* Effect.logWarning("Closed a feed connection whose client stopped reading", {
                      tenant,
                      timeout: Duration.format(config.feedSlowConsumerTimeout)
                    })
                    // The platform waits for the socket to drain: only cutting it ends the response.
                    socket?.destroy()
                    return yield* Effect.interrupt
                  }
                })

              const close = send(`retry: ${RETRY_MS}\n: the server is shutting down; reconnect\n\n`).pipe(
                Effect.andThen(Queue.end(queue))
              )

              yield* send(`retry: ${RETRY_MS}\n\n`)
              if (yield* Ref.get(lifecycle.shuttingDown)) return yield* close
              let live = false
              let nextHeartbeat = Date.now() + heartbeatMs
              for (;;) {
                const news = pending
                pending = undefined
                if (news?.closing === true) return yield* close
                const quiet = live && news !== undefined && news.since !== undefined &&
                  comparePositions(position, { xid: news.since, n: 0 }) >= 0 &&
                  !(request.streams ?? ["\u0000"]).some((stream) =>
                    stream === "\u0000"
                      ? Array.from(news.touched).some((t) => t.startsWith(`${tenant}\u0000`))
                      : news.touched.has(touchKey(tenant, stream))
                  )
                if (quiet) {
                  position = laterOf(position, { xid: news.horizon, n: 0 })
                } else if (!live || news !== undefined) {
                  const { changes, full, next } = yield* readPage(
                    tenant,
                    request.streams,
                    position,
                    TAIL_PAGE,
                    request.filters
                  )
                  if (changes.length > 0) {
                    yield* send(changes.map((c) => sseRecord(c.position, c.text)).join(""))
                    const now = Date.now()
                    for (const c of changes) yield* Metric.update(feedDelivery, (now - c.ingestedAt) / 1000)
                  }
                  position = next
                  live = !full
                  if (full) continue
                }
                const wait = nextHeartbeat - Date.now()
                if (wait > 0 && pending === undefined) {
                  yield* Effect.timeoutOption(woken.await, wait)
                }
                woken.closeUnsafe()
                if (Date.now() >= nextHeartbeat) {
                  yield* send(sseHeartbeat(positions.encode(tenant, position)))
                  nextHeartbeat = Date.now() + heartbeatMs
                }
              }
            }).pipe(
              Effect.catchCause((cause) =>
                Cause.hasInterruptsOnly(cause)
                  ? Effect.interrupt
                  : Effect.logWarning("A feed tail failed; the client reconnects with its last id", cause).pipe(
                    Effect.andThen(Queue.end(queue))
                  )
              )
            ), { bufferSize: 1 })
        })

      return ChangeFeed.of({ page, tail })
    })
  )
}

/** A record answer's ingestedAt in ms, for the delivery metric, without parsing the record. */
const ingestedAtOf = (answer: string): number => {
  const at = answer.indexOf(`"ingestedAt":"`)
  return at < 0 ? Date.now() : Date.parse(answer.slice(at + 14, at + 38))
}
