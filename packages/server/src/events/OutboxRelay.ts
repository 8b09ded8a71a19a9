/**
 * Publishes the outbox to the EventBus (README: Events). It drains in batches of
 * OUTBOX_BATCH, oldest first, deleting what the bus acknowledged; after a batch
 * that came back short (the outbox had no more) it waits OUTBOX_POLL_INTERVAL
 * before the next. Under a steady stream of writes that makes a few full batches
 * instead of a claim and a delete, each a commit, for every handful of events.
 * When the bus (or the database) fails it backs off exponentially with
 * jitter, up to 30 s, and carries on: POSTs keep succeeding, the outbox grows,
 * and it drains when the bus is back. Each publish has a timeout (OUTBOX_PUBLISH_TIMEOUT), so a broker
 * that hangs counts as a failure.
 *
 * An event's value is its record's text as this process holds it (HeldRecords:
 * the records it stored or read lately); only the others are read from the database.
 *
 * No database connection is held while publishing (on the embedded PGlite the
 * pool has one connection, and every write would wait for Kafka): a pass takes
 * the relay lease and reads a batch in one statement, publishes, then deletes
 * what was published and renews the lease in another. With several replicas
 * the lease lets one relay drain at a time, so events with one key keep their
 * order; a relay that finds its lease taken (it outlived it) stops. The lease
 * is given up at the end of each pass and outlasts a publish that times out, so
 * a replica that crashes holding it delays the others by at most the lease.
 * Delivery is at least once: a crash (or a lost lease) between publishing and
 * the delete publishes that batch again; consumers deduplicate by record id.
 *
 * Polling is not traced (an empty pass every 100 ms would bury everything
 * else); each publish is a producer span with the OpenTelemetry messaging
 * attributes, linked to the requests that stored its events. Each acknowledged
 * event's delivery lag (from its transaction to the acknowledgement) goes into
 * a histogram.
 */
import { Array as Arr, Duration, Effect, Layer, Metric, Option, References, Schedule, type Tracer } from "effect"
import { Headers, HttpTraceContext } from "effect/http"
import { randomUUID } from "node:crypto"
import { DatabaseConfig } from "../platform/config/DatabaseConfig.ts"
import { KafkaConfig } from "../platform/config/KafkaConfig.ts"
import { LATENCY_BUCKETS } from "../platform/observability/DbMetrics.ts"
import { EventBus, EventBusError, type OutboxEvent } from "./EventBus.ts"
import { HeldRecords } from "./HeldRecords.ts"
import { OutboxStore } from "./OutboxStore.ts"

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

/** Lags run from milliseconds to the length of an outage: the latency buckets, then up to an hour. */
const LAG_BUCKETS = [...LATENCY_BUCKETS, 30, 60, 300, 900, 3600]

export const deliveryLag = Metric.histogram("strata_event_delivery_lag_seconds", {
  description: "Time from the transaction that stored an event to the bus's acknowledgement of it",
  boundaries: LAG_BUCKETS
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

/**
 * How long a relay's lease lasts from each claim or delete: enough for a publish
 * that times out and the database calls around it, twice over.
 */
export const relayLease = (
  config: { readonly outboxPublishTimeout: Duration.Duration; readonly dbTimeout: Duration.Duration }
) => Duration.times(Duration.sum(config.outboxPublishTimeout, config.dbTimeout), 2)

/** Published events between two vacuums of the outbox (OutboxStore.vacuum says why). */
export const VACUUM_EVERY = 20_000

/**
 * One pass of the relay named `holder`: publishes batches until one comes back
 * short of OUTBOX_BATCH (the outbox had no more then), another replica holds the
 * lease, or it fails. Answers how many it published. `upkeep`
 * counts deletions across passes, so the outbox is vacuumed every VACUUM_EVERY.
 */
export const relayOnce = (holder: string, upkeep: { deletedSinceVacuum: number } = { deletedSinceVacuum: 0 }) =>
  Effect.gen(function*() {
    const db = yield* OutboxStore
    const bus = yield* EventBus
    const heldRecords = yield* HeldRecords
    const config = { ...(yield* DatabaseConfig), ...(yield* KafkaConfig) }
    const tracing = yield* References.TracerEnabled
    const lease = relayLease(config)
    const publish = (events: ReadonlyArray<OutboxEvent>) =>
      Effect.suspend(() => {
        const start = performance.now()
        return bus.publish(events).pipe(
          Effect.timeoutOrElse({
            duration: config.outboxPublishTimeout,
            orElse: () =>
              Effect.fail(
                new EventBusError({
                  message: `the event bus did not answer within ${Duration.format(config.outboxPublishTimeout)}`
                })
              )
          }),
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
          attributes: {
            "messaging.system": bus.system,
            "messaging.operation.type": "send",
            "messaging.destination.name": config.kafkaTopic,
            "messaging.batch.message_count": events.length
          }
        }, { captureStackTrace: false }),
        Effect.withTracerEnabled(tracing)
      )
    let total = 0
    let claimed = false
    return yield* Effect.gen(function*() {
      while (true) {
        // Short statements only: the connection goes back to the pool before the publish.
        const events = yield* db.claim(holder, lease, config.outboxBatch, heldRecords.textOf).pipe(
          Effect.withTracerEnabled(false)
        )
        if (!Arr.isReadonlyArrayNonEmpty(events)) return total
        claimed = true
        yield* publish(events)
        // One step for the whole batch, not an Effect per event.
        yield* Effect.withFiber((fiber) => {
          const acknowledged = Date.now()
          for (const event of events) deliveryLag.updateUnsafe((acknowledged - event.storedAt) / 1000, fiber.context)
          return Effect.void
        })
        const held = yield* db.ack(holder, lease, Arr.map(events, (e) => e.seq)).pipe(
          Effect.withTracerEnabled(false)
        )
        total += events.length
        yield* Metric.update(outboxPublished, events.length)
        upkeep.deletedSinceVacuum += events.length
        if (upkeep.deletedSinceVacuum >= VACUUM_EVERY) {
          upkeep.deletedSinceVacuum = 0
          // Upkeep only: a vacuum that fails leaves the outbox slower, not wrong.
          yield* db.vacuum.pipe(
            Effect.catch((error) => Effect.logWarning("Outbox vacuum failed", error.message)),
            Effect.withTracerEnabled(false)
          )
        }
        if (!held) {
          claimed = false
          return total
        }
        if (events.length < config.outboxBatch) return total
      }
    }).pipe(
      // Hand the lease on when the pass ends, however it ends (the drained
      // outbox, a failure, shutdown): another replica need not wait for it to
      // expire. Best effort, and briefly: a shutdown must not wait on a database that is down.
      Effect.ensuring(
        Effect.suspend(() =>
          claimed
            ? db.release(holder).pipe(Effect.timeout(config.dbTimeout), Effect.ignore)
            : Effect.void
        ).pipe(Effect.withTracerEnabled(false))
      )
    )
  })

export const layerOutboxRelay: Layer.Layer<
  never,
  never,
  OutboxStore | EventBus | HeldRecords | DatabaseConfig | KafkaConfig
> = Layer
  .effectDiscard(
    Effect.gen(function*() {
      const config = { ...(yield* DatabaseConfig), ...(yield* KafkaConfig) }
      const db = yield* OutboxStore
      const backoff = Schedule.min([Schedule.exponential("100 millis"), Schedule.spaced("30 seconds")]).pipe(
        Schedule.jittered
      )
      const holder = randomUUID() // this replica, in the lease table
      const upkeep = { deletedSinceVacuum: 0 }
      yield* relayOnce(holder, upkeep).pipe(
        Effect.tapError((error) => Effect.logWarning("Outbox relay failed; backing off", error.message)),
        Effect.retry(backoff),
        Effect.andThen(Effect.sleep(config.outboxPollInterval)),
        Effect.forever,
        Effect.forkScoped
      )
      // Size and age of the backlog, for alerts on a bus that stays down.
      yield* db.stats.pipe(
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
