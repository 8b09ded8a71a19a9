/**
 * Every setting of the server, read from the environment and checked at startup.
 * The settings come in slices, one per concern (HttpConfig, DatabaseConfig,
 * CacheConfig, KafkaConfig, TelemetryConfig, LimitsConfig, FeedConfig), each its own
 * service, so a layer's type says what it reads; AppConfig is their union, for
 * what wants them all (`strata config`, the README's table). The README's
 * configuration table lists each variable with its default.
 */
import { ConfigProvider, Context, Effect, Layer } from "effect"
import { CacheConfig, cacheFields, type CacheSettings } from "./CacheConfig.ts"
import { DatabaseConfig, databaseFields, type DatabaseSettings } from "./DatabaseConfig.ts"
import { FeedConfig, feedFields, type FeedSettings } from "./FeedConfig.ts"
import { HttpConfig, httpFields, type HttpSettings } from "./HttpConfig.ts"
import { KafkaConfig, kafkaFields, type KafkaSettings } from "./KafkaConfig.ts"
import { LimitsConfig, limitsFields, type LimitsSettings } from "./LimitsConfig.ts"
import { type InvalidConfig, readAll } from "./Read.ts"
import { TelemetryConfig, telemetryFields, type TelemetrySettings } from "./TelemetryConfig.ts"

export { describeDatabase, PartitionInterval } from "./DatabaseConfig.ts"
export { TracesSampler } from "./TelemetryConfig.ts"

/** Every variable, for reading them all at once (startup names every bad one). */
export const allFields = {
  ...httpFields,
  ...databaseFields,
  ...cacheFields,
  ...kafkaFields,
  ...telemetryFields,
  ...limitsFields,
  ...feedFields
}

export type Settings =
  & HttpSettings
  & DatabaseSettings
  & CacheSettings
  & KafkaSettings
  & TelemetrySettings
  & LimitsSettings
  & FeedSettings

/** Each slice and the fields it takes from the union. */
const slices = [
  [HttpConfig, httpFields],
  [DatabaseConfig, databaseFields],
  [CacheConfig, cacheFields],
  [KafkaConfig, kafkaFields],
  [TelemetryConfig, telemetryFields],
  [LimitsConfig, limitsFields],
  [FeedConfig, feedFields]
] as const

export type ConfigServices =
  | AppConfig
  | HttpConfig
  | DatabaseConfig
  | CacheConfig
  | KafkaConfig
  | TelemetryConfig
  | LimitsConfig
  | FeedConfig

/** AppConfig and every slice, from one set of settings. */
const provideAll = (settings: Settings): Context.Context<ConfigServices> => {
  let context = Context.make(AppConfig, settings) as Context.Context<ConfigServices>
  for (const [service, fields] of slices) {
    const slice = Object.fromEntries(Object.keys(fields).map((key) => [key, settings[key as keyof Settings]]))
    context = Context.add(context, service as Context.Key<any, any>, slice)
  }
  return context
}

export class AppConfig extends Context.Service<AppConfig, Settings>()("strata/config/AppConfig") {
  /**
   * AppConfig and every slice from the environment (through the current
   * ConfigProvider), read in one go so that every bad variable is reported.
   */
  static readonly layer: Layer.Layer<ConfigServices, InvalidConfig> = Layer.effectContext(
    Effect.map(readAll(allFields), provideAll)
  )

  /**
   * Defaults with overrides, for tests and tools: AppConfig and every slice.
   * The process environment is not read, so a developer's exported
   * MAX_BODY_BYTES does not change what a test sees.
   */
  static readonly layerWith = (overrides: Partial<Settings> = {}): Layer.Layer<ConfigServices, InvalidConfig> =>
    Layer.effectContext(
      readAll(allFields).pipe(
        Effect.map((defaults) => provideAll({ ...defaults, ...overrides })),
        Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromUnknown({}))
      )
    )
}
