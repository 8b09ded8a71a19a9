/**
 * `pnpm strata events tail`: an operator's view of the topic. Reads KAFKA_TOPIC
 * (from now on, or from the beginning) in a consumer group of its own that
 * commits nothing, so it never moves a real consumer's offsets, and prints one
 * line per event.
 */
import { Consumer, type Message, stringDeserializers } from "@platformatic/kafka"
import { Effect } from "effect"
import { randomUUID } from "node:crypto"
import type { KafkaSettings } from "../platform/config/KafkaConfig.ts"
import { EventBusError } from "./EventBus.ts"
import { describeKafkaError, guardConnections, kafkaConnection } from "./KafkaConnection.ts"

type Event = Message<string, string, string, string>

/** `tenant=… stream=… key=… id=… partition=… offset=… trace=…`; `-` for what the event lacks. */
export const tailLine = (event: Event): string => {
  const header = (name: string) => event.headers.get(name) ?? "-"
  let key = "-"
  try {
    const record = JSON.parse(event.value) as { key?: unknown }
    if (typeof record.key === "string") key = JSON.stringify(record.key)
  } catch {
    key = "?" // not a Strata record
  }
  const trace = event.headers.get("traceparent")?.split("-")[1] ?? "-"
  return `tenant=${header("strata-tenant")} stream=${header("strata-stream")} key=${key} ` +
    `id=${header("strata-record-id")} partition=${event.partition} offset=${event.offset} trace=${trace}`
}

/** Prints the events until interrupted (Ctrl-C). */
export const tailEvents = (
  config: KafkaSettings,
  options: { readonly fromBeginning: boolean; readonly stream: string | undefined },
  print: (line: string) => void
) =>
  Effect.gen(function*() {
    if (config.kafkaBrokers.length === 0) {
      return yield* new EventBusError({ message: "KAFKA_BROKERS is unset: there is no topic to tail" })
    }
    const consumer = yield* Effect.acquireRelease(
      Effect.sync(() =>
        guardConnections(
          new Consumer({
            ...kafkaConnection(config),
            groupId: `strata-tail-${randomUUID()}`,
            deserializers: stringDeserializers,
            maxWaitTime: 500
          })
        )
      ),
      (c) => Effect.promise(() => c.close(true).catch(() => undefined))
    )
    const stream = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          consumer.consume({
            topics: [config.kafkaTopic],
            mode: options.fromBeginning ? "earliest" : "latest",
            autocommit: false
          }),
        catch: (cause) =>
          new EventBusError({ message: describeKafkaError(config, `Reading ${config.kafkaTopic}`, cause), cause })
      }),
      (s) => Effect.promise(() => s.close().catch(() => undefined))
    )
    return yield* Effect.callback<never, EventBusError>((resume) => {
      stream.on("data", (event: Event) => {
        if (options.stream === undefined || event.headers.get("strata-stream") === options.stream) {
          print(tailLine(event))
        }
      })
      stream.on("error", (cause: Error) =>
        resume(Effect.fail(
          new EventBusError({ message: describeKafkaError(config, `Reading ${config.kafkaTopic}`, cause), cause })
        )))
    })
  }).pipe(Effect.scoped)
