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
 */
import { Duration, Effect, Layer, Metric, Schedule } from "effect"
import { AppConfig } from "../config/AppConfig.ts"
import { Db } from "../db/Db.ts"
import { EventBus } from "./EventBus.ts"

export const outboxSize = Metric.gauge("strata_outbox_events", { description: "Events waiting in the outbox" })
export const outboxOldestAge = Metric.gauge("strata_outbox_oldest_event_age_seconds", {
  description: "Age of the oldest event waiting in the outbox"
})
export const outboxPublished = Metric.counter("strata_outbox_published_total", {
  description: "Events published from the outbox"
})

/** One pass: drains until the outbox is empty (or another replica holds it). Answers how many it published. */
export const relayOnce = Effect.gen(function*() {
  const db = yield* Db
  const bus = yield* EventBus
  const config = yield* AppConfig
  let total = 0
  while (true) {
    const n = yield* db.drainOutbox(config.outboxBatch, (events) => bus.publish(events))
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
      Effect.repeat(Schedule.spaced(Duration.seconds(5))),
      Effect.forkScoped
    )
  })
)
