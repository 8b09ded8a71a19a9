/** The change feed (README: Change feed): how long it keeps changes, how it wakes, its heartbeats and its caps. */
import { Config, Context, Duration, Layer } from "effect"
import { type InvalidConfig, readAll, type Values } from "./Read.ts"
import { duration, intBetween } from "./Units.ts"

export const feedFields = {
  feedRetention: duration("FEED_RETENTION").pipe(Config.withDefault(Duration.days(7))),
  feedHeartbeat: duration("FEED_HEARTBEAT").pipe(Config.withDefault(Duration.seconds(15))),
  feedPollInterval: duration("FEED_POLL_INTERVAL").pipe(Config.withDefault(Duration.millis(200))),
  feedMaxStreams: intBetween("FEED_MAX_STREAMS", 1, 1_000_000).pipe(Config.withDefault(10_000)),
  feedMaxStreamsPerKey: intBetween("FEED_MAX_STREAMS_PER_KEY", 1, 1_000_000).pipe(Config.withDefault(100)),
  feedSlowConsumerTimeout: duration("FEED_SLOW_CONSUMER_TIMEOUT").pipe(Config.withDefault(Duration.seconds(30)))
}

export type FeedSettings = Values<typeof feedFields>

export class FeedConfig extends Context.Service<FeedConfig, FeedSettings>()("strata/config/FeedConfig") {
  static readonly layer: Layer.Layer<FeedConfig, InvalidConfig> = Layer.effect(FeedConfig, readAll(feedFields))
}
