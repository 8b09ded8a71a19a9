import { Unavailable } from "@strata/domain"
import { Effect, Schema } from "effect"
import type { SqlError } from "effect/sql"

/**
 * Why a database call failed. Everything but `StatementFailed` may succeed when
 * tried again: the database was slow, unreachable, or chose this transaction as
 * the one to roll back.
 */
export const DbFailure = Schema.Literals([
  "Timeout",
  "ConnectionLost",
  "Deadlock",
  "SerializationFailure",
  "CircuitOpen",
  "StatementFailed"
])
export type DbFailure = typeof DbFailure.Type

/** A database call that failed, and why. */
export class DbError extends Schema.TaggedError<DbError>()("DbError", {
  reason: DbFailure,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {
  /** A retry may succeed; the HTTP layer answers 503 with `Retry-After`. */
  get transient(): boolean {
    return this.reason !== "StatementFailed"
  }
  /** The database certainly rolled the transaction back, so even a write may be sent again. */
  get rolledBack(): boolean {
    return this.reason === "Deadlock" || this.reason === "SerializationFailure"
  }
}

const REASONS: Readonly<Record<string, DbFailure>> = {
  ConnectionError: "ConnectionLost",
  DeadlockError: "Deadlock",
  SerializationError: "SerializationFailure",
  LockTimeoutError: "Timeout",
  StatementTimeoutError: "Timeout"
}

/** A SQL failure as a DbError; a reason the driver marks retryable but we do not know counts as a lost connection. */
export const fromSqlError = (error: SqlError.SqlError): DbError =>
  new DbError({
    reason: REASONS[error.reason._tag] ?? (error.isRetryable ? "ConnectionLost" : "StatementFailed"),
    message: error.message,
    cause: error
  })

/** Whether a failure is a database that is down or slow (not a bug): for callers outside a fiber. */
export const isTransient = (error: unknown): error is DbError => error instanceof DbError && error.transient

/** The one answer every route gives a transient database failure. */
export const databaseUnavailable = (detail = "The database is unavailable; retry shortly."): Unavailable =>
  new Unavailable({ detail })

/** A database that is down or slow is a 503 the client may retry (logged as a warning); anything else is a bug (500). */
export const unavailableOnTransient = (error: DbError, detail?: string): Effect.Effect<never, Unavailable> =>
  error.transient
    ? Effect.andThen(Effect.logWarning("Database unavailable", error.message), Effect.fail(databaseUnavailable(detail)))
    : Effect.die(error)
