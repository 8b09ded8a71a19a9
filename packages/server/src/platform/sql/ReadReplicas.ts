/**
 * PostgreSQL streaming replicas for reads (README: Read replicas), from
 * DATABASE_READ_URL. Reads by id, list pages, exports and feed pages are
 * wrapped in `read` by their callers; nothing else leaves the primary, so no
 * decision (authentication, idempotency, schema versions, the outbox, anything
 * a write depends on) is ever taken on a copy.
 *
 * Freshness, three rules:
 * - Without a position, a replica serves while it is within REPLICA_MAX_LAG of
 *   the primary. The lag is measured once a second against samples of the
 *   primary's WAL position: a replica that has replayed what the primary had
 *   written at T is at most now − T behind. (The age of its last replayed
 *   commit, the usual measure, calls an idle replica late.)
 * - With a position (read your writes), a replica serves only once its horizon,
 *   the xmin of its snapshot (the change feed's horizon, ChangeLog.ts), has
 *   reached what the position needs: every transaction up to it has then been
 *   replayed there. It is waited for up to REPLICA_WAIT, then the read goes to
 *   the primary.
 * - Absence is confirmed by the primary: an answer the caller says may be
 *   incomplete (a record not found, a page that would be the last) is read again
 *   there, so a lagging replica never makes a record look missing or a stream
 *   look ended.
 * A replica that fails a read leaves rotation until its next check succeeds,
 * and the read goes to the primary. One that is no longer in recovery (it was
 * promoted) is not a copy of this primary any more: it leaves rotation too.
 */
import { PgClient } from "@effect/sql-pg"
import { Cause, Context, Duration, Effect, Exit, Layer, Metric, Result, Schedule } from "effect"
import { Reactivity } from "effect/reactivity"
import { DatabaseConfig } from "../config/DatabaseConfig.ts"
import { labelled } from "../observability/Labels.ts"
import { withDeadline } from "../runtime/Deadline.ts"
import { poolConfig } from "./Connection.ts"
import { ReadTarget, type Replica } from "./ReadTarget.ts"

/**
 * What a read needs of a replica: nothing (`undefined`: within REPLICA_MAX_LAG
 * will do), a horizon of at least this transaction id, or the primary itself.
 */
export type ReadNeed = bigint | "primary" | undefined

export interface ReadOptions<A> {
  readonly need?: ReadNeed
  /** False when only the primary may give this answer (it says that something is absent): it is read again there. */
  readonly final?: (answer: A) => boolean
}

/** How often each replica's lag and horizon are read. */
const CHECK_EVERY = Duration.seconds(1)
/** How often a read that waits for a replica asks its horizon again. */
const POLL_EVERY = Duration.millis(2)
/** Samples of the primary's WAL position kept: lag is measured up to this many checks back. */
const SAMPLES = 600

const servedReads = labelled((attributes) =>
  Metric.counter("strata_db_reads_total", {
    description: "Reads that may go to a replica (by id, pages, exports, feed pages), by the node that answered",
    incremental: true,
    attributes
  })
)
const lagSecondsGauge = labelled((attributes) =>
  Metric.gauge("strata_replica_lag_seconds", {
    description: "How far a read replica is behind the primary, in seconds (measured once a second)",
    attributes
  })
)
const lagBytesGauge = labelled((attributes) =>
  Metric.gauge("strata_replica_lag_bytes", {
    description: "WAL the primary has written that a read replica has not replayed yet, in bytes",
    attributes
  })
)
const inRotationGauge = labelled((attributes) =>
  Metric.gauge("strata_replica_in_rotation", {
    description: "1 while a read replica serves reads without a position (up, in recovery, within REPLICA_MAX_LAG)",
    attributes
  })
)

/** `16/B374D848` → its byte position. */
const lsnOf = (text: string): bigint => {
  const [high, low] = text.split("/")
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`)
}

interface ReplicaState {
  readonly replica: Replica
  /** The replica's horizon now: one query shared by every read waiting for it. */
  readonly poll: Effect.Effect<bigint, unknown>
  up: boolean
  recovering: boolean
  horizon: bigint
  lagSeconds: number
  lagBytes: number
}

export class ReadReplicas extends Context.Service<ReadReplicas, {
  /** `read` on a replica when one fits `need`, else on the primary; on the primary again when it fails there or is not `final`. */
  readonly read: <A, E, R>(read: Effect.Effect<A, E, R>, options?: ReadOptions<A>) => Effect.Effect<A, E, R>
  /** `up` when every replica is in rotation, `degraded` when one is not; none configured: `undefined`. */
  readonly health: Effect.Effect<"up" | "degraded" | undefined>
}>()("strata/sql/ReadReplicas") {
  /** No replicas: every read on the primary. */
  static readonly layerNone: Layer.Layer<ReadReplicas> = Layer.succeed(
    ReadReplicas,
    ReadReplicas.of({ read: (read) => read, health: Effect.succeed(undefined) })
  )

  static readonly layerPg: Layer.Layer<ReadReplicas, never, PgClient.PgClient | DatabaseConfig> = Layer.unwrap(
    Effect.gen(function*() {
      const config = yield* DatabaseConfig
      if (config.databaseReadUrl.length === 0) return ReadReplicas.layerNone
      return Layer.effect(ReadReplicas, make)
    })
  )
}

const make = Effect.gen(function*() {
  const config = yield* DatabaseConfig
  const primary = yield* PgClient.PgClient
  const maxLagSeconds = Duration.toSeconds(config.replicaMaxLag)
  const timeoutMs = Duration.toMillis(config.replicaTimeout)
  const bounded = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    withDeadline(effect, timeoutMs, () => Effect.fail("timeout" as const))

  const states: Array<ReplicaState> = []
  for (const [i, url] of config.databaseReadUrl.entries()) {
    // Lazy pools (no connection until the first statement): a replica that is down
    // at startup is out of rotation, not a reason not to start.
    const sql = yield* PgClient.make({
      ...poolConfig(url, config.databasePoolMax, config.databasePlanCacheMode),
      connectTimeout: config.replicaTimeout
    }).pipe(Effect.provide(Reactivity.layer), Effect.orDie)
    const replica: Replica = { name: `replica-${i + 1}`, sql }
    const poll = yield* Effect.cachedWithTTL(
      bounded(Effect.map(
        sql<{ readonly horizon: string }>`SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon`,
        ([row]) => BigInt(row.horizon)
      )),
      Duration.zero
    )
    states.push({ replica, poll, up: false, recovering: false, horizon: 0n, lagSeconds: 0, lagBytes: 0 })
  }

  const inRotation = (s: ReplicaState) => s.up && s.recovering
  const fresh = (s: ReplicaState) => inRotation(s) && s.lagSeconds <= maxLagSeconds

  // --- The checks: the primary's WAL position, then each replica's replay, once a second.
  const samples: Array<{ readonly lsn: bigint; readonly at: number }> = []
  const report = (s: ReplicaState, wasFresh: boolean) =>
    Effect.gen(function*() {
      const attributes = { replica: s.replica.name }
      yield* Metric.update(lagSecondsGauge(attributes), s.lagSeconds)
      yield* Metric.update(lagBytesGauge(attributes), s.lagBytes)
      yield* Metric.update(inRotationGauge(attributes), fresh(s) ? 1 : 0)
      if (fresh(s) === wasFresh) return
      if (fresh(s)) yield* Effect.logInfo("Read replica in rotation", attributes)
      else {
        yield* Effect.logWarning("Read replica out of rotation; its reads go to the primary", {
          ...attributes,
          reason: !s.up ? "does not answer" : !s.recovering ? "not in recovery (promoted?)" : "lagging",
          lagSeconds: s.lagSeconds
        })
      }
    })
  const checkReplica = (s: ReplicaState) =>
    Effect.gen(function*() {
      const wasFresh = fresh(s)
      const exit = yield* Effect.exit(bounded(
        s.replica.sql<{ readonly recovering: boolean; readonly replayed: string; readonly horizon: string }>`
          SELECT pg_is_in_recovery() AS recovering,
                 COALESCE(pg_last_wal_replay_lsn(), '0/0')::text AS replayed,
                 pg_snapshot_xmin(pg_current_snapshot())::text AS horizon`
      ))
      if (Exit.isFailure(exit)) s.up = false
      else {
        const [row] = exit.value
        const replayed = lsnOf(row.replayed)
        const now = Date.now()
        s.up = true
        s.recovering = row.recovering
        s.horizon = BigInt(row.horizon)
        const newest = samples.at(-1)
        s.lagBytes = newest === undefined || newest.lsn <= replayed ? 0 : Number(newest.lsn - replayed)
        // The newest sample it has replayed says how far behind it can be; none: older than them all.
        let caughtUpTo = samples.length > 0 ? samples[0].at : now
        for (let i = samples.length - 1; i >= 0; i--) {
          if (samples[i].lsn <= replayed) {
            caughtUpTo = samples[i].at
            break
          }
        }
        s.lagSeconds = s.lagBytes === 0 ? 0 : (now - caughtUpTo) / 1000
      }
      yield* report(s, wasFresh)
    })
  const check = Effect.gen(function*() {
    const lsn = yield* Effect.exit(bounded(primary<{ readonly lsn: string }>`SELECT pg_current_wal_lsn()::text AS lsn`))
    if (Exit.isSuccess(lsn)) {
      samples.push({ lsn: lsnOf(lsn.value[0].lsn), at: Date.now() })
      if (samples.length > SAMPLES) samples.shift()
    }
    yield* Effect.forEach(states, checkReplica, { concurrency: "unbounded", discard: true })
  })
  // The first check before any read, so reads use the replicas from the start.
  yield* check
  yield* Effect.forkScoped(Effect.repeat(Effect.delay(check, CHECK_EVERY), Schedule.forever))

  // --- Choosing a replica for a read.
  let turn = 0
  const choose = (fits: (s: ReplicaState) => boolean): ReplicaState | undefined => {
    for (let i = 0; i < states.length; i++) {
      const s = states[(turn + i) % states.length]
      if (fits(s)) {
        turn = (turn + i + 1) % states.length
        return s
      }
    }
    return undefined
  }
  const waitMs = Duration.toMillis(config.replicaWait)
  const pick = (need: ReadNeed): Effect.Effect<ReplicaState | undefined> => {
    if (need === "primary") return Effect.succeed(undefined)
    if (need === undefined) return Effect.succeed(choose(fresh))
    const ready = choose((s) => inRotation(s) && s.horizon >= need)
    if (ready !== undefined || waitMs === 0) return Effect.succeed(ready)
    // Wait for the one furthest along.
    let best: ReplicaState | undefined
    for (const s of states) if (inRotation(s) && (best === undefined || s.horizon > best.horizon)) best = s
    if (best === undefined) return Effect.succeed(undefined)
    const waited = best
    return waited.poll.pipe(
      Effect.tap((horizon) =>
        Effect.sync(() => {
          if (horizon > waited.horizon) waited.horizon = horizon
        })
      ),
      Effect.repeat({ until: (horizon) => horizon >= need, schedule: Schedule.spaced(POLL_EVERY) }),
      (effect) => withDeadline(effect, waitMs, () => Effect.fail("late" as const)),
      Effect.match({ onFailure: () => undefined, onSuccess: () => waited })
    )
  }

  const count = (node: string) => Metric.update(servedReads({ node }), 1)
  const onPrimary = <A, E, R>(read: Effect.Effect<A, E, R>) => Effect.tap(read, () => count("primary"))

  const read = <A, E, R>(read: Effect.Effect<A, E, R>, options: ReadOptions<A> = {}): Effect.Effect<A, E, R> =>
    Effect.flatMap(pick(options.need), (s) => {
      if (s === undefined) return onPrimary(read)
      return Effect.flatMap(Effect.exit(Effect.provideService(read, ReadTarget, s.replica)), (exit) => {
        if (Exit.isSuccess(exit)) {
          return options.final === undefined || options.final(exit.value)
            ? Effect.as(count(s.replica.name), exit.value)
            : onPrimary(read)
        }
        const error = Result.getOrUndefined(Cause.findError(exit.cause)) as
          | { readonly _tag?: unknown; readonly transient?: unknown }
          | undefined
        // Interrupted, or failed for the request's own reasons: as it is.
        if (error?._tag !== "DbError") return exit
        return Effect.gen(function*() {
          if (error.transient === true && s.up) {
            const wasFresh = fresh(s)
            s.up = false
            yield* report(s, wasFresh)
          }
          return yield* onPrimary(read)
        })
      })
    })

  const health = Effect.sync(() => states.every(fresh) ? "up" as const : "degraded" as const)
  return ReadReplicas.of({ read, health })
})
