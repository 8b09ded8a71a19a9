/**
 * Publishes the outbox to the EventBus (SPEC §4). It drains in batches of
 * OUTBOX_BATCH, oldest first, deleting what the bus acknowledged, and polls
 * every OUTBOX_POLL_INTERVAL when there is nothing to do. When the bus (or the
 * database) fails it backs off exponentially with jitter, up to 30 s, and
 * carries on: POSTs keep succeeding, the outbox grows, and it drains when the
 * bus is back. Delivery is at least once: a crash between publishing and the
 * commit of the delete publishes that batch again; consumers deduplicate by
 * record id. With several replicas, an advisory lock lets one drain at a time,
 * so events with one key keep their order.
 *
 * Polling is not traced (an empty pass every 100 ms would bury everything
 * else); each publish is a span linked to the requests that stored its events.
 */
import { Effect, Layer, Metric, Option, References, Schedule, type Tracer } from "effect"
import { Headers, HttpTraceContext } from "effect/http"
import { AppConfig } from "../config/AppConfig.ts"
import { Db } from "../db/Db.ts"
import { LATENCY_BUCKETS } from "../observability/DbMetrics.ts"
import { EventBus, type OutboxEvent } from "./EventBus.ts"

export const outboxSize = Metric.gauge("strata_outbox_events", { description: "Events waiting in the outbox" })
export const outboxOldestAge = Metric.gauge("strata_outbox_oldest_event_age_seconds", {
  description: "Age of the oldest event waiting in the outbox"
})
export const outboxPublished = Metric.counter("strata_outbox_published_total", {
  description: "Events published from the outbox"
})

export const publishDuration = Metric.histogram("strata_event_publish_duration_seconds", {
  description: "Duration of event-bus publishes (one batch of events each) by outcome (ok, error)",
  boundaries: LATENCY_BUCKETS
})
export const publishErrors = Metric.counter("strata_event_publish_errors_total", {
  description: "Event-bus publishes that failed (the batch stays in the outbox and is retried)",
  incremental: true
})

/** At most this many links per publish span: the sampled requests behind the batch. */
const MAX_LINKS = 128

const linksOf = (events: ReadonlyArray<OutboxEvent>): Array<Tracer.SpanLink> => {
  const links: Array<Tracer.SpanLink> = []
  for (const event of events) {
    if (event.traceparent === null || links.length >= MAX_LINKS) continue
    const origin = HttpTraceContext.fromHeaders(Headers.fromInput({ traceparent: event.traceparent }))
    if (Option.isSome(origin) && origin.value.sampled) links.push({ span: origin.value, attributes: {} })
  }
  return links
}

/** One pass: drains until the outbox is empty (or another replica holds it). Answers how many it published. */
export const relayOnce = Effect.gen(function*() {
  const db = yield* Db
  const bus = yield* EventBus
  const config = yield* AppConfig
  const tracing = yield* References.TracerEnabled
  const publish = (events: ReadonlyArray<OutboxEvent>) =>
    Effect.suspend(() => {
      const start = performance.now()
      return bus.publish(events).pipe(
        Effect.onExit((exit) =>
          Effect.andThen(
            Metric.update(
              Metric.withAttributes(publishDuration, { outcome: exit._tag === "Success" ? "ok" : "error" }),
              (performance.now() - start) / 1000
            ),
            exit._tag === "Success" ? Effect.void : Metric.update(publishErrors, 1)
          )
        )
      )
    }).pipe(
      Effect.withSpan("EventBus.publish", {
        kind: "producer",
        root: true,
        links: linksOf(events),
        attributes: { "messaging.destination.name": config.kafkaTopic, "messaging.batch.message_count": events.length }
      }),
      Effect.withTracerEnabled(tracing)
    )
  let total = 0
  while (true) {
    const n = yield* db.drainOutbox(config.outboxBatch, publish).pipe(Effect.withTracerEnabled(false))
    if (n === 0) return total
    total += n
    yield* Metric.update(outboxPublished, n)
  }
})

export const OutboxRelayLive: Layer.Layer<never, never, Db | EventBus | AppConfig> = Layer.effectDiscard(
  Effect.gen(function*() {
    const config = yield* AppConfig
    const db = yield* Db
    const backoff = Schedule.min([Schedule.exponential("100 millis"), Schedule.spaced("30 seconds")]).pipe(
      Schedule.jittered
    )
    yield* relayOnce.pipe(
      Effect.tapError((error) => Effect.logWarning("Outbox relay failed; backing off", error.message)),
      Effect.retry(backoff),
      Effect.andThen(Effect.sleep(config.outboxPollInterval)),
      Effect.forever,
      Effect.forkScoped
    )
    // Size and age of the backlog, for alerts on a bus that stays down.
    yield* db.outboxStats.pipe(
      Effect.flatMap((stats) =>
        Effect.andThen(Metric.update(outboxSize, stats.size), Metric.update(outboxOldestAge, stats.oldestAgeSeconds))
      ),
      Effect.ignore,
      Effect.repeat(Schedule.spaced("5 seconds")),
      Effect.withTracerEnabled(false),
      Effect.forkScoped
    )
  })
)
