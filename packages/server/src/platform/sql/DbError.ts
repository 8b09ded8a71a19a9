import { Schema } from "effect"
import type { SqlError } from "effect/sql"

/** The database (or the call's deadline) ran out of time. */
export class Timeout extends Schema.TaggedClass<Timeout>()("Timeout", {}) {}
/** The connection broke, or could not be made. */
export class ConnectionLost extends Schema.TaggedClass<ConnectionLost>()("ConnectionLost", {}) {}
/** The database chose this transaction to roll back to end a deadlock. */
export class Deadlock extends Schema.TaggedClass<Deadlock>()("Deadlock", {}) {}
/** The database rolled back a transaction that could not be serialised. */
export class SerializationFailure extends Schema.TaggedClass<SerializationFailure>()("SerializationFailure", {}) {}
/** The breaker is open: the database failed too often to be asked now. */
export class CircuitOpen extends Schema.TaggedClass<CircuitOpen>()("CircuitOpen", {}) {}
/** The statement itself failed (a bug or a constraint): trying again would not help. */
export class StatementFailed extends Schema.TaggedClass<StatementFailed>()("StatementFailed", {}) {}

/**
 * Why a database call failed, as tagged reasons (`Effect.catchReason("DbError",
 * "Timeout", …)` matches one). Everything but `StatementFailed` may succeed when
 * tried again: the database was slow, unreachable, or chose this transaction as
 * the one to roll back.
 */
export const DbFailure = Schema.Union([
  Timeout,
  ConnectionLost,
  Deadlock,
  SerializationFailure,
  CircuitOpen,
  StatementFailed
])
export type DbFailure = typeof DbFailure.Type

/** A database call that failed, and why. */
export class DbError extends Schema.TaggedError<DbError>()("DbError", {
  reason: DbFailure,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {
  /** A retry may succeed; the HTTP layer answers 503 with `Retry-After` (http/Problems.ts). */
  get transient(): boolean {
    return this.reason._tag !== "StatementFailed"
  }
  /** The database certainly rolled the transaction back, so even a write may be sent again. */
  get rolledBack(): boolean {
    return this.reason._tag === "Deadlock" || this.reason._tag === "SerializationFailure"
  }
}

const REASONS: Readonly<Record<string, () => DbFailure>> = {
  ConnectionError: () => new ConnectionLost(),
  DeadlockError: () => new Deadlock(),
  SerializationError: () => new SerializationFailure(),
  LockTimeoutError: () => new Timeout(),
  StatementTimeoutError: () => new Timeout()
}

/** The SQLSTATE the server sent, which the driver keeps on its cause. */
const sqlStateOf = (error: SqlError.SqlError): string | undefined => {
  const code = (error.reason.cause as { readonly code?: unknown } | undefined)?.code
  return typeof code === "string" ? code : undefined
}

/**
 * SQLSTATE classes of a server that cannot serve now but soon may: 53
 * (insufficient resources: too many connections, out of memory) and 57
 * (operator intervention: starting up, shutting down, crashed). The driver
 * knows neither, and "the database system is starting up" is what every
 * connection hears for a while after a crash.
 */
const UNAVAILABLE_CLASSES = new Set(["53", "57"])

/**
 * A SQL failure as a DbError; a reason the driver marks retryable but we do
 * not know, or a server saying it cannot serve now, counts as a lost connection.
 */
export const fromSqlError = (error: SqlError.SqlError): DbError =>
  new DbError({
    reason: REASONS[error.reason._tag]?.() ??
      (error.isRetryable || UNAVAILABLE_CLASSES.has(sqlStateOf(error)?.slice(0, 2) ?? "")
        ? new ConnectionLost()
        : new StatementFailed()),
    message: error.message,
    cause: error
  })

export const isDbError = (error: unknown): error is DbError => error instanceof DbError
