import { Schema } from "effect"
import type { SqlError } from "effect/sql"

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

/** A SQL failure as a DbError, transient when the driver says a retry may succeed. */
export const fromSqlError = (error: SqlError.SqlError): DbError =>
  new DbError({ transient: error.isRetryable, message: error.message, cause: error })
