/**
 * Where accepted records are published (SPEC §4): Kafka through
 * `@platformatic/kafka` (idempotent producer, topic KAFKA_TOPIC) or, when
 * KAFKA_BROKERS is unset, an in-memory bus that keeps what was published.
 * The producer connects lazily, so the service starts and takes writes with
 * Kafka down or absent: events wait in the outbox.
 */
import { Producer, stringSerializers } from "@platformatic/kafka"
import type { StoredRecord } from "@strata/domain"
import { Context, Effect, Layer, Option, Redacted, Schema } from "effect"
import { AppConfig } from "../config/AppConfig.ts"

/** One outbox row: the event of one stored record. */
export interface OutboxEvent {
  readonly seq: string
  readonly tenant: string
  readonly messageKey: string
  readonly record: StoredRecord
  readonly traceparent: string | null
}

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
 */
export const toKafkaMessage = (topic: string, event: OutboxEvent): KafkaMessage => ({
  topic,
  key: event.messageKey,
  value: JSON.stringify(event.record),
  headers: {
    "strata-tenant": event.tenant,
    "strata-stream": event.record.stream,
    "strata-record-id": event.record.id,
    // "none" when the stream had no schema: a header value is a string.
    "strata-schema-version": event.record.schemaVersion == null ? "none" : String(event.record.schemaVersion),
    ...(event.traceparent !== null ? { traceparent: event.traceparent } : {})
  }
})

export class EventBus extends Context.Service<EventBus, {
  /** Publishes the events in order; fails as a whole if any is not acknowledged. */
  readonly publish: (events: ReadonlyArray<OutboxEvent>) => Effect.Effect<void, EventBusError>
}>()("strata/EventBus") {
  static readonly layerKafka: Layer.Layer<EventBus, never, AppConfig> = Layer.effect(
    EventBus,
    Effect.gen(function*() {
      const config = yield* AppConfig
      const producer = yield* Effect.acquireRelease(
        Effect.sync(() =>
          new Producer({
            clientId: config.kafkaClientId,
            bootstrapBrokers: config.kafkaBrokers,
            idempotent: true,
            serializers: stringSerializers,
            ...(config.kafkaTls ? { tls: {} } : {}),
            ...(Option.isSome(config.kafkaSaslMechanism)
              ? {
                sasl: {
                  mechanism: config.kafkaSaslMechanism.value,
                  username: config.kafkaSaslUsername,
                  password: Redacted.value(config.kafkaSaslPassword)
                }
              }
              : {})
          })
        ),
        (p) => Effect.promise(() => p.close().catch(() => undefined))
      )
      return EventBus.of({
        publish: (events) =>
          events.length === 0 ? Effect.void : Effect.tryPromise({
            try: () => producer.send({ messages: events.map((e) => toKafkaMessage(config.kafkaTopic, e)) }),
            catch: (cause) => new EventBusError({ message: "Kafka did not acknowledge the batch", cause })
          }).pipe(Effect.asVoid) // traced and measured by the relay, for any bus
      })
    })
  )

  /** Kafka when KAFKA_BROKERS is set, the in-memory bus otherwise. */
  static readonly layerFromConfig: Layer.Layer<EventBus, never, AppConfig> = Layer.unwrap(
    Effect.gen(function*() {
      const config = yield* AppConfig
      return config.kafkaBrokers.length > 0 ? EventBus.layerKafka : MemoryEventBus.layer
    })
  )
}

/** The in-memory bus, with what it published and switches to make it fail or hang (tests). */
export class MemoryEventBus extends Context.Service<MemoryEventBus, {
  readonly published: Array<KafkaMessage>
  /** Publishes fail at once, like a broker that refuses connections. */
  failing: boolean
  /** Publishes never answer, like a broker that accepts connections and then goes silent. */
  hanging: boolean
}>()("strata/MemoryEventBus") {
  static readonly layer: Layer.Layer<EventBus | MemoryEventBus, never, AppConfig> = Layer.effectContext(
    Effect.gen(function*() {
      const config = yield* AppConfig
      const state = { published: [] as Array<KafkaMessage>, failing: false, hanging: false }
      const bus = EventBus.of({
        publish: (events) =>
          Effect.suspend(() => {
            if (state.hanging) return Effect.never
            if (state.failing) return Effect.fail(new EventBusError({ message: "the in-memory bus is set to fail" }))
            for (const e of events) state.published.push(toKafkaMessage(config.kafkaTopic, e))
            return Effect.void
          })
      })
      return Context.make(EventBus, bus).pipe(Context.add(MemoryEventBus, MemoryEventBus.of(state)))
    })
  )
}
