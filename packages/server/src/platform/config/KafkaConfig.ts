/** Kafka, where the outbox relay publishes the record events, and the relay's pace. */
import { Config, Context, Duration, Layer, Redacted } from "effect"
import { type InvalidConfig, readAll, type Values } from "./Read.ts"
import { duration, flag, intBetween, oneOf } from "./Units.ts"

export const kafkaFields = {
  kafkaBrokers: Config.String("KAFKA_BROKERS").pipe(
    Config.withDefault(""),
    Config.map((text) => text.split(",").map((s) => s.trim()).filter((s) => s.length > 0))
  ),
  kafkaTopic: Config.String("KAFKA_TOPIC").pipe(Config.withDefault("strata.records")),
  // Enough partitions to spread consumers, three replicas to survive a broker's loss.
  kafkaTopicPartitions: intBetween("KAFKA_TOPIC_PARTITIONS", 1, 10_000).pipe(Config.withDefault(12)),
  kafkaTopicReplication: intBetween("KAFKA_TOPIC_REPLICATION", 1, 32).pipe(Config.withDefault(3)),
  kafkaClientId: Config.String("KAFKA_CLIENT_ID").pipe(Config.withDefault("strata")),
  kafkaTls: flag("KAFKA_TLS").pipe(Config.withDefault(false)),
  kafkaSaslMechanism: Config.option(oneOf(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], "KAFKA_SASL_MECHANISM")),
  kafkaSaslUsername: Config.String("KAFKA_SASL_USERNAME").pipe(Config.withDefault("")),
  kafkaSaslPassword: Config.Redacted("KAFKA_SASL_PASSWORD").pipe(Config.withDefault(Redacted.make(""))),
  outboxBatch: intBetween("OUTBOX_BATCH", 1, 10_000).pipe(Config.withDefault(500)),
  outboxPollInterval: duration("OUTBOX_POLL_INTERVAL").pipe(Config.withDefault(Duration.millis(100))),
  outboxPublishTimeout: duration("OUTBOX_PUBLISH_TIMEOUT").pipe(Config.withDefault(Duration.seconds(10)))
}

export type KafkaSettings = Values<typeof kafkaFields>

export class KafkaConfig extends Context.Service<KafkaConfig, KafkaSettings>()("strata/config/KafkaConfig") {
  static readonly layer: Layer.Layer<KafkaConfig, InvalidConfig> = Layer.effect(KafkaConfig, readAll(kafkaFields))
}
