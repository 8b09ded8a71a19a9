/**
 * The stream's most recent records, as a schema check before registration needs
 * them. Declared here, provided by the records feature (App.ts wires it to
 * RecordStore), so schemas do not import records, which validate against schemas.
 */
import { Context, type Effect } from "effect"
import type { DbError } from "../platform/sql/DbError.ts"

export interface Sample {
  readonly id: string
  readonly data: unknown
}

export class StreamSamples extends Context.Service<StreamSamples, {
  /** Up to `limit` of the stream's records, newest first. */
  readonly recent: (tenant: string, stream: string, limit: number) => Effect.Effect<ReadonlyArray<Sample>, DbError>
}>()("strata/schemas/StreamSamples") {}
