/**
 * An EventBus for tests that keeps every message it is given and can be told to
 * fail or to hang. Test support only: it keeps everything, so a server must
 * never run on it (production uses Kafka or the discarding sink).
 */
import { AppConfig, EventBus, EventBusError, type KafkaMessage, toKafkaMessage } from "@strata/server"
import { Context, Effect, Layer } from "effect"

export class RecordingBus extends Context.Service<RecordingBus, {
  readonly published: Array<KafkaMessage>
  /** Publishes fail at once, like a broker that refuses connections. */
  failing: boolean
  /** Publishes never answer, like a broker that accepts connections and then goes silent. */
  hanging: boolean
}>()("strata/test/RecordingBus") {
  static readonly layer: Layer.Layer<EventBus | RecordingBus, never, AppConfig> = Layer.effectContext(
    Effect.gen(function*() {
      const config = yield* AppConfig
      const state = { published: [] as Array<KafkaMessage>, failing: false, hanging: false }
      const bus = EventBus.of({
        system: "test",
        publish: (events) =>
          Effect.suspend(() => {
            if (state.hanging) return Effect.never
            if (state.failing) return Effect.fail(new EventBusError({ message: "the recording bus is set to fail" }))
            for (const e of events) state.published.push(toKafkaMessage(config.kafkaTopic, e))
            return Effect.void
          })
      })
      return Context.make(EventBus, bus).pipe(Context.add(RecordingBus, RecordingBus.of(state)))
    })
  )
}
