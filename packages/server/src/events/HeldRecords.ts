/**
 * Records whose answer text this process holds (the records feature's in-process
 * cache, wired in App.ts): the relay publishes those texts as they are instead of
 * reading each record back from the database and serialising it again. Declared
 * here, so events do not reach into records' caching; `none` holds nothing, and
 * every event's record is then read from the database.
 */
import { Context, Layer } from "effect"

export class HeldRecords extends Context.Service<HeldRecords, {
  /** The record's text (`recordText`) when held here, else undefined. */
  readonly textOf: (tenant: string, recordId: string) => string | undefined
}>()("strata/events/HeldRecords") {
  static readonly none: Layer.Layer<HeldRecords> = Layer.succeed(
    HeldRecords,
    HeldRecords.of({ textOf: () => undefined })
  )
}
