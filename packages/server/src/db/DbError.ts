import { Schema } from "effect"

/**
 * A database call that failed. `transient` failures (connection lost, timeout,
 * serialization failure, deadlock) may succeed when tried again; the HTTP layer
 * answers them with 503 and `Retry-After`.
 */
export class DbError extends Schema.TaggedError<DbError>()("DbError", {
  transient: Schema.Boolean,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}
