/**
 * The Kafka EventBus (README: Events), through `@platformatic/kafka`: an idempotent
 * producer (acks from all in-sync replicas) to KAFKA_TOPIC, which it creates
 * when missing.
 *
 * Kafka is never needed to start: the producer connects on the first publish,
 * and the topic is checked in the background (retried with backoff) and again
 * before a publish while it is not known to exist, so a failure there is one
 * more failed publish that the relay retries on its schedule.
 *
 * A publish that fails or is cut off (the relay's OUTBOX_PUBLISH_TIMEOUT)
 * throws its producer away. The client retries an idempotent producer's
 * requests forever, so a send left behind would hold its batch in memory for
 * as long as Kafka is down, and could still land after the relay (or another
 * replica) had published newer events with the same keys.
 */
import {
  Admin,
  compatibilityPartitioner,
  findErrorBy,
  ProduceAcks,
  Producer,
  stringSerializers
} from "@platformatic/kafka"
import { Effect, Layer, Schedule } from "effect"
import { KafkaConfig, type KafkaSettings } from "../platform/config/KafkaConfig.ts"
import { EventBus, EventBusError, toKafkaMessage } from "./EventBus.ts"
import { describeKafkaError, guardConnections, kafkaConnection } from "./KafkaConnection.ts"

/** Attempts of a client request before it fails (the client's default for an idempotent producer is forever). */
const RETRIES = 3

/** The broker's error code for a topic that exists (a constant, not a string argument: see config-docs.test.ts). */
const TOPIC_EXISTS = "TOPIC_ALREADY_EXISTS"

/**
 * Makes `config.kafkaTopic` unless it exists: KAFKA_TOPIC_PARTITIONS partitions
 * of KAFKA_TOPIC_REPLICATION replicas, and with 3 or more replicas
 * `min.insync.replicas=2`, so an acknowledged event is on two brokers.
 * Answers whether it made it.
 */
export const ensureTopic = (config: KafkaSettings) =>
  Effect.tryPromise({
    try: async () => {
      const admin = guardConnections(new Admin({ ...kafkaConnection(config), retries: RETRIES }))
      try {
        if ((await admin.listTopics()).includes(config.kafkaTopic)) return false
        await admin.createTopics({
          topics: [config.kafkaTopic],
          partitions: config.kafkaTopicPartitions,
          replicas: config.kafkaTopicReplication,
          configs: config.kafkaTopicReplication >= 3 ? [{ name: "min.insync.replicas", value: "2" }] : []
        }).catch((error: Error) => {
          // Another replica made it meanwhile.
          if (findErrorBy(error, "apiId", TOPIC_EXISTS) === null) throw error
        })
        return true
      } finally {
        await admin.close().catch(() => undefined)
      }
    },
    catch: (cause) =>
      new EventBusError({ message: describeKafkaError(config, `Kafka topic ${config.kafkaTopic}`, cause), cause })
  })

export const layerKafka: Layer.Layer<EventBus, never, KafkaConfig> = Layer.effect(
  EventBus,
  Effect.gen(function*() {
    const config = yield* KafkaConfig
    let topicReady = false
    const checkTopic = Effect.suspend(() => topicReady ? Effect.succeed(false) : ensureTopic(config)).pipe(
      Effect.tap((made) => {
        topicReady = true
        return made
          ? Effect.logInfo("Created the Kafka topic", {
            topic: config.kafkaTopic,
            partitions: config.kafkaTopicPartitions,
            replication: config.kafkaTopicReplication
          })
          : Effect.void
      }),
      Effect.asVoid,
      Effect.withTracerEnabled(false)
    )
    // At startup, with Kafka down: warn and try again later, never fail.
    yield* checkTopic.pipe(
      Effect.tapError((error) => Effect.logWarning(error.message)),
      Effect.retry(Schedule.min([Schedule.exponential("1 second"), Schedule.spaced("30 seconds")])),
      Effect.ignore,
      Effect.forkScoped
    )

    let producer: Producer<string, string, string, string> | undefined
    const current = () =>
      producer ??= guardConnections(
        new Producer({
          ...kafkaConnection(config),
          idempotent: true,
          // Acknowledged once every in-sync replica has it (min.insync.replicas=2 with three replicas);
          // an idempotent producer requires it, so this only says it.
          acks: ProduceAcks.ALL,
          retries: RETRIES,
          retryDelay: 250,
          // The partition of a key is the Java client's, so other Kafka clients agree on it.
          partitioner: compatibilityPartitioner,
          serializers: stringSerializers
        })
      )
    const discard = (used: Producer<string, string, string, string>) =>
      Effect.sync(() => {
        if (producer === used) producer = undefined
        used.close(true).catch(() => undefined)
      })
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => producer === undefined ? Promise.resolve() : producer.close(true).catch(() => undefined))
    )

    return EventBus.of({
      system: "kafka",
      publish: (events) =>
        events.length === 0 ? Effect.void : Effect.gen(function*() {
          yield* checkTopic
          const used = current()
          yield* Effect.tryPromise({
            try: () => used.send({ messages: events.map((e) => toKafkaMessage(config.kafkaTopic, e)) }),
            catch: (cause) =>
              new EventBusError({
                message: describeKafkaError(config, "Kafka did not acknowledge the batch", cause),
                cause
              })
          }).pipe(Effect.onExit((exit) => exit._tag === "Success" ? Effect.void : discard(used)))
        }) // traced and measured by the relay, for any bus
    })
  })
)

/** Kafka when KAFKA_BROKERS is set, the discarding sink otherwise. */
export const layerEventBus: Layer.Layer<EventBus, never, KafkaConfig> = Layer.unwrap(
  Effect.gen(function*() {
    const config = yield* KafkaConfig
    if (config.kafkaBrokers.length > 0) return layerKafka
    yield* Effect.logInfo("KAFKA_BROKERS is unset: events are acknowledged and discarded, not published")
    return EventBus.layerDiscard
  })
)
