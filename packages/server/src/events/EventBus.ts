/**
 * Where accepted records are published (README: Events): the EventBus service, the
 * Kafka message of an event, and the sink used without Kafka. The Kafka bus and
 * the choice between the two by KAFKA_BROKERS are in KafkaBus.ts.
 */
import { Context, Effect, Layer, Schema } from "effect"
import type { OutboxEvent } from "../records/OutboxEvent.ts"

export type { OutboxEvent } from "../records/OutboxEvent.ts"

export class EventBusError extends Schema.TaggedError<EventBusError>()("EventBusError", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

export interface KafkaMessage {
  readonly topic: string
  readonly key: string
  readonly value: string
  readonly headers: Record<string, string>
}

/**
 * The Kafka message of an event: key `tenant/stream/key-or-id`, the record as
 * JSON, identifying headers and the W3C `traceparent` of the storing request.
 * The one place that turns an outbox event into a message, for every bus.
 */
export const toKafkaMessage = (topic: string, event: OutboxEvent): KafkaMessage => ({
  topic,
  key: event.messageKey,
  // The bytes GET /data/{id} answers: every digit kept, data keys in jsonb's order.
  value: event.text,
  headers: {
    "strata-tenant": event.tenant,
    "strata-stream": event.stream,
    "strata-record-id": event.recordId,
    // "none" when the stream had no schema: a header value is a string.
    "strata-schema-version": event.schemaVersion === null ? "none" : String(event.schemaVersion),
    ...(event.traceparent !== null ? { traceparent: event.traceparent } : {})
  }
})

export class EventBus extends Context.Service<EventBus, {
  /** `messaging.system` of the publish spans: `kafka`, or `none` for the discarding sink. */
  readonly system: string
  /** Publishes the events in order; fails as a whole if any is not acknowledged. */
  readonly publish: (events: ReadonlyArray<OutboxEvent>) => Effect.Effect<void, EventBusError>
}>()("strata/events/EventBus") {
  /**
   * Without Kafka: every event is acknowledged and dropped, so the relay deletes
   * it from the outbox as usual. Nothing is kept anywhere (before, an in-memory
   * bus kept every event and a long-running server ran out of memory).
   */
  static readonly layerDiscard: Layer.Layer<EventBus> = Layer.succeed(
    EventBus,
    EventBus.of({ system: "none", publish: () => Effect.void })
  )
}
