/**
 * Database metrics (README: Operations). Calls are measured where DbPolicy runs them, by
 * operation name (`Db.insert`, `IdempotencyStore.claim`: a fixed set, so label
 * cardinality stays bounded), including retries. The pool is read from
 * PostgreSQL's `pg_stat_activity`, since @effect/sql-pg keeps its pool to itself:
 * each process connects under its own `application_name`.
 */
import { Duration, Effect, Layer, Metric, Schedule } from "effect"
import { SqlClient } from "effect/sql"
import { hostname } from "node:os"
import { labelled } from "./Labels.ts"

/** Buckets around the 500 ms P99 target: fine below it, coarse above. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

export const dbCallDuration = labelled((attributes) =>
  Metric.histogram("strata_db_query_duration_seconds", {
    description: "Duration of database calls (all attempts) by operation and outcome (ok, error)",
    boundaries: LATENCY_BUCKETS,
    attributes
  })
)

export const dbCallErrors = labelled((attributes) =>
  Metric.counter("strata_db_query_errors_total", {
    description:
      "Failed database calls by operation and reason (transient: down, timeout, deadlock…; permanent; circuit_open)",
    incremental: true,
    attributes
  })
)

export const poolConnections = Metric.gauge("strata_db_pool_connections", {
  description: "Connections this process holds to PostgreSQL, by state (active, idle), sampled every 5 s"
})

export const poolMax = Metric.gauge("strata_db_pool_max_connections", {
  description: "Size limit of the connection pool (DATABASE_POOL_MAX, 1 for the embedded database)"
})

export const poolWaiting = Metric.gauge("strata_db_pool_waiting", {
  description: "Database calls in flight beyond the pool size, that is, waiting for a connection"
})

/** This process's `application_name`, so its connections can be told apart in `pg_stat_activity`. */
export const applicationName = `strata:${hostname()}:${process.pid}`.slice(0, 63)

/**
 * Counts calls in flight against the pool size; wraps every database call. A
 * call holds at most one connection at a time, so the calls beyond the pool
 * size are the ones waiting for one.
 */
export const makePoolTracker = (size: number) => {
  let inFlight = 0
  const update = Effect.suspend(() => Metric.update(poolWaiting, Math.max(0, inFlight - size)))
  return <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.suspend(() => {
      inFlight++
      return Effect.andThen(update, effect).pipe(
        Effect.ensuring(Effect.suspend(() => {
          inFlight--
          return update
        }))
      )
    })
}

/** Samples this process's connections every 5 s (untraced: it is not a request). */
export const layerPoolMetrics = (size: number): Layer.Layer<never, never, SqlClient.SqlClient> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* Metric.update(poolMax, size)
    yield* sql<{ readonly active: number; readonly idle: number }>`
      SELECT count(*) FILTER (WHERE state <> 'idle' AND pid <> pg_backend_pid())::int AS active,
             count(*) FILTER (WHERE state = 'idle' OR pid = pg_backend_pid())::int AS idle
      FROM pg_stat_activity WHERE application_name = ${applicationName}`.pipe(
      Effect.flatMap(([row]) =>
        Effect.andThen(
          Metric.update(Metric.withAttributes(poolConnections, { state: "active" }), row.active),
          Metric.update(Metric.withAttributes(poolConnections, { state: "idle" }), row.idle)
        )
      ),
      Effect.ignore,
      Effect.repeat(Schedule.spaced(Duration.seconds(5))),
      Effect.withTracerEnabled(false),
      Effect.forkScoped
    )
  }))
