import { Duration, Effect, Schema } from "effect"
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

/**
 * The policy every SQL call of the stores goes through: a timeout (a slow
 * database is treated like a down one), SQL errors as `DbError` marked transient
 * when the driver says a retry may succeed, and a span named `<store>.<call>`.
 */
export const guardSql = (timeout: Duration.Duration) => {
  const timedOut = (name: string) =>
    Effect.fail(new DbError({ transient: true, message: `${name} timed out after ${Duration.format(timeout)}` }))
  return <A>(name: string, effect: Effect.Effect<A, SqlError.SqlError>): Effect.Effect<A, DbError> =>
    effect.pipe(
      Effect.timeoutOrElse({ duration: timeout, orElse: () => timedOut(name) }),
      Effect.catchTag("SqlError", (e) =>
        Effect.fail(new DbError({ transient: e.isRetryable, message: e.message, cause: e }))),
      Effect.withSpan(name)
    )
}
