/**
 * The resilience policy of every database call (README: Resilience), in one place:
 * - a timeout per attempt (DB_TIMEOUT): a slow database is treated like a down one;
 * - retries with exponential backoff and jitter (DB_RETRIES, DB_RETRY_BASE), only
 *   for transient failures. Idempotent calls retry on any of them; writes only when the
 *   database certainly rolled back (deadlock, serialization failure), since a
 *   lost connection may hide a commit;
 * - a circuit breaker (DB_BREAKER_FAILURES transient failures in a row open it):
 *   while open, calls fail at once with a transient DbError (a fast 503), and
 *   after a cool-down of 1 s, doubling up to 5 s, one call probes the database
 *   (one call every 5 s costs a database that is down nothing, and bounds recovery).
 * Each call is also a span named after it and is measured (DbMetrics).
 * A read placed on a replica (ReadTarget) gets REPLICA_TIMEOUT per attempt, one
 * attempt and no breaker: ReadReplicas reads the primary instead when it fails.
 */
import { Cause, Context, Duration, Effect, type Exit, Layer, Metric, Option, Result, Schedule } from "effect"
import { CircuitBreaker } from "effect/persistence"
import type { SqlError } from "effect/sql"
import { DatabaseConfig } from "../config/DatabaseConfig.ts"
import { trackBreaker } from "../observability/BreakerMetrics.ts"
import { dbCallDuration, dbCallErrors, makePoolTracker } from "../observability/DbMetrics.ts"
import { withDeadline } from "../runtime/Deadline.ts"
import { CircuitOpen, DbError, fromSqlError, Timeout } from "./DbError.ts"
import { ReadTarget } from "./ReadTarget.ts"

/**
 * `idempotent` calls (reads, upserts, DDL with IF [NOT] EXISTS) may be retried after any transient failure;
 * `write`s only when the database rolled back; a statement of an open `transaction` never (its transaction is lost).
 */
export type CallKind = "idempotent" | "write" | "transaction"

/**
 * A store's database calls under the policy: each named `<store>.<call>` (its span and metrics), idempotent unless said.
 * `size`: how many DB_TIMEOUTs one attempt may take (a bulk write of many rows is that many writes' work); 1 by default.
 */
export type PolicedCall = <A>(
  name: string,
  effect: Effect.Effect<A, SqlError.SqlError>,
  kind?: CallKind,
  size?: number
) => Effect.Effect<A, DbError>

export class DbPolicy extends Context.Service<DbPolicy, {
  readonly run: <A>(
    name: string,
    kind: CallKind,
    effect: Effect.Effect<A, SqlError.SqlError>,
    size?: number
  ) => Effect.Effect<A, DbError>
}>()("strata/sql/DbPolicy") {
  /** The calls of the store named `store`, e.g. `callsOf("Db")` for `Db.insert`, `Db.findById`. */
  static readonly callsOf = (store: string): Effect.Effect<PolicedCall, never, DbPolicy> =>
    Effect.map(
      DbPolicy,
      (policy): PolicedCall => (name, effect, kind = "idempotent", size = 1) =>
        policy.run(`${store}.${name}`, kind, effect, size)
    )

  static readonly layer: Layer.Layer<DbPolicy, never, DatabaseConfig> = Layer.effect(
    DbPolicy,
    Effect.gen(function*() {
      const config = yield* DatabaseConfig
      const breaker = yield* CircuitBreaker.make({
        tripPolicy: CircuitBreaker.consecutive(config.dbBreakerFailures),
        openDuration: Schedule.min([Schedule.exponential("1 second"), Schedule.spaced("5 seconds")])
      }).pipe(Effect.provide(CircuitBreaker.layerStoreMemory()))
      yield* trackBreaker("database", breaker)
      const backoff = Schedule.exponential(config.dbRetryBase).pipe(
        Schedule.jittered,
        Schedule.upTo({ times: config.dbRetries })
      )

      const timeoutMs = Duration.toMillis(config.dbTimeout)
      const replicaTimeoutMs = Duration.toMillis(config.replicaTimeout)
      const attempt = <A>(name: string, effect: Effect.Effect<A, SqlError.SqlError>, size: number, ms = timeoutMs) =>
        withDeadline(
          Effect.catchTag(effect, "SqlError", (e) => Effect.fail(fromSqlError(e))),
          ms * size,
          () =>
            Effect.fail(
              new DbError({
                reason: new Timeout(),
                message: `${name} timed out after ${Duration.format(Duration.millis(ms * size))}`
              })
            )
        )

      const trackPool = makePoolTracker(Option.isSome(config.databaseUrl) ? config.databasePoolMax : 1)
      const countError = (operation: string, reason: "transient" | "permanent" | "circuit_open") =>
        Metric.update(dbCallErrors({ operation, reason }), 1)
      /** Duration by outcome and errors by reason; an interrupted call (its request went away) is neither. */
      const measured = <A, E extends DbError | CircuitBreaker.CircuitBreakerError>(
        operation: string,
        effect: Effect.Effect<A, E>
      ) =>
        Effect.suspend(() => {
          const start = performance.now()
          return Effect.onExit(effect, (exit) => {
            const error = exit._tag === "Failure" ? Result.getOrUndefined(Cause.findError(exit.cause)) : undefined
            if (exit._tag === "Failure" && error?._tag !== "DbError") return Effect.void
            const seconds = (performance.now() - start) / 1000
            const outcome = error === undefined ? "ok" : "error"
            return Effect.andThen(
              Metric.update(dbCallDuration({ operation, outcome }), seconds),
              error?._tag === "DbError"
                ? countError(operation, error.transient ? "transient" : "permanent")
                : Effect.void
            )
          })
        })

      const retryable = (kind: CallKind) => (error: DbError) =>
        kind !== "transaction" && error.transient && (kind === "idempotent" || error.rolledBack)

      const onReplica = <A>(
        name: string,
        effect: Effect.Effect<A, SqlError.SqlError>,
        size: number
      ): Effect.Effect<A, DbError> =>
        measured(name, attempt(name, effect, Math.max(1, size), replicaTimeoutMs)).pipe(
          Effect.withSpan(name, { attributes: { "db.replica": true } }, { captureStackTrace: false })
        )

      const onPrimary = <A>(
        name: string,
        kind: CallKind,
        effect: Effect.Effect<A, SqlError.SqlError>,
        size: number
      ): Effect.Effect<A, DbError> =>
        measured(
          name,
          breaker.execute(
            attempt(name, effect, Math.max(1, size)).pipe(
              Effect.retry({ schedule: backoff, while: retryable(kind) })
            ),
            {
              key: "database",
              // Only an unavailable database trips the breaker, never a bad statement.
              classify: (exit: Exit.Exit<A, DbError>) =>
                exit._tag === "Failure" && Result.getOrUndefined(Cause.findError(exit.cause))?.transient === true
                  ? CircuitBreaker.failure()
                  : CircuitBreaker.success
            }
          )
        ).pipe(
          Effect.catchTag("CircuitBreakerError", () =>
            Effect.andThen(
              countError(name, "circuit_open"),
              Effect.fail(new DbError({ reason: new CircuitOpen(), message: "database circuit breaker is open" }))
            )),
          trackPool,
          Effect.withSpan(name, undefined, { captureStackTrace: false }) // a stack per call costs on the hot path
        )

      return DbPolicy.of({
        run: <A>(name: string, kind: CallKind, effect: Effect.Effect<A, SqlError.SqlError>, size = 1) =>
          Effect.withFiber((fiber) =>
            fiber.getRef(ReadTarget) === undefined
              ? onPrimary(name, kind, effect, size)
              : onReplica(name, effect, size)
          )
      })
    })
  )
}
