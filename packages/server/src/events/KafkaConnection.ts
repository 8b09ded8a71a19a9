/**
 * How every Kafka client of Strata connects (the relay's producer, the topic
 * check, `pnpm strata events tail`): brokers, client id, TLS and SASL from the
 * configuration, and one-line reasons for failures that name the cause and
 * never the password.
 */
import type { Base, BaseOptions, Connection } from "@platformatic/kafka"
import { Option, Redacted } from "effect"
import type { KafkaSettings } from "../platform/config/KafkaConfig.ts"

type ConnectionSettings = Pick<
  KafkaSettings,
  | "kafkaBrokers"
  | "kafkaClientId"
  | "kafkaTls"
  | "kafkaSaslMechanism"
  | "kafkaSaslUsername"
  | "kafkaSaslPassword"
>

export const kafkaConnection = (config: ConnectionSettings) =>
  ({
    clientId: config.kafkaClientId,
    bootstrapBrokers: config.kafkaBrokers,
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
  }) satisfies Partial<BaseOptions>

/**
 * Keeps an `error` listener on each of `client`'s broker connections. The
 * client's pool listens for a connection's first error only, and an
 * EventEmitter's `error` with no listener throws: a second one (a broker that
 * dies mid-request resets the socket and then fails the write) would crash the
 * server. The requests still fail, and are retried, as usual.
 */
export const guardConnections = <C extends Base>(client: C): C => {
  client.on("client:broker:connect", (event: { readonly connection?: Connection }) => {
    event.connection?.on("error", () => undefined)
  })
  return client
}

/** Every error in a client error's chain: its causes and, for aggregates, their members. */
const chain = (error: unknown): Array<Error> => {
  const seen: Array<Error> = []
  const visit = (e: unknown) => {
    if (!(e instanceof Error) || seen.includes(e) || seen.length > 50) return
    seen.push(e)
    if (e instanceof AggregateError) { for (const member of e.errors) visit(member) }
    visit(e.cause)
  }
  visit(error)
  return seen
}

/**
 * One line about a failed Kafka call: what was refused and why, e.g. rejected
 * SASL credentials or a refused connection, rather than the client's generic
 * "metadata failed 4 times". The password is never part of it.
 */
export const describeKafkaError = (config: ConnectionSettings, what: string, error: unknown): string => {
  const errors = chain(error)
  const code = (e: Error) => (e as { code?: unknown }).code
  let line: string
  if (errors.some((e) => code(e) === "PLT_KFK_AUTHENTICATION")) {
    const mechanism = Option.getOrElse(config.kafkaSaslMechanism, () => "?")
    line = `${what}: Kafka rejected the SASL credentials of user ${
      JSON.stringify(config.kafkaSaslUsername)
    } (${mechanism}); check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD`
  } else {
    // The innermost distinct messages say most (a refused connection, a broker's error code).
    const messages = [...new Set(errors.map((e) => e.message).filter((m) => m.length > 0))]
    const reason = messages.length <= 2 ? messages.join(": ") : `${messages[0]}: ${messages.at(-1)}`
    line = `${what} (brokers ${config.kafkaBrokers.join(",")}): ${reason || String(error)}`
  }
  const password = Redacted.value(config.kafkaSaslPassword)
  return password.length > 0 ? line.replaceAll(password, "<redacted>") : line
}
