/**
 * Declared indexes (README: Declared indexes): the paths of `data` a tenant
 * filters on in a stream, each an index on `records` restricted to that tenant
 * and stream. A btree on the field, then (occurred_at, id), serves comparisons
 * in page order; a GIN `jsonb_path_ops` on the field serves `contains` only.
 *
 * On PostgreSQL an index is made on the parent alone (`ON ONLY`, invalid), then
 * built on each partition with CREATE INDEX CONCURRENTLY, so writes go on, and
 * attached; once every partition's is attached the parent's is valid, and the
 * partitions made later get it when they are attached (RecordPartitions).
 *
 * Builds are coordinated through the database, which several processes share:
 * one process at a time builds, the one holding a session-level advisory lock
 * (BUILDER_LOCK) on a connection of its own, and it builds every index that is
 * `building`, one after another. Each process looks for such indexes at start
 * and every SWEEP, so one whose build was cut short (its process stopped or was
 * killed, which frees the lock with its session) is taken up again, from the
 * partitions not yet attached. On PGlite (one process) there is no lock.
 *
 * Declared paths are names of letters, digits, `_` and `-`: their SQL form (the
 * index expression, which a filter must repeat word for word to use the index,
 * whatever plan_cache_mode) is then safe by construction. Values stay parameters.
 */
import { PgClient } from "@effect/sql-pg"
import { Cause, Clock, Context, Effect, Layer, Option, Result, Schedule, Semaphore } from "effect"
import { Reactivity } from "effect/reactivity"
import type { SqlError } from "effect/sql"
import { createHash } from "node:crypto"
import { type DbError, fromSqlError } from "../platform/sql/DbError.ts"
import { DbPolicy } from "../platform/sql/DbPolicy.ts"

export type IndexKind = "btree" | "gin"
export type IndexState = "building" | "ready" | "failed"

export interface IndexSpec {
  readonly path: ReadonlyArray<string>
  readonly kind: IndexKind
}

export interface DeclaredIndex extends IndexSpec {
  readonly state: IndexState
  /** Partitions whose index is built and attached, of `partitions`. */
  readonly built: number
  readonly partitions: number
}

/** A name in a declared path. */
export const INDEX_PATH_NAME = /^[A-Za-z0-9_-]{1,63}$/
/** At most this many declared indexes per stream. */
export const MAX_INDEXES = 8
/** At most this deep. */
export const MAX_INDEX_DEPTH = 8

/** A string as an SQL literal; every value reaching it was checked against a pattern without quotes first. */
const literal = (text: string) => `'${text.replaceAll("'", "''")}'`

/** The field as the index and the filters that use it write it. */
export const indexedField = (path: ReadonlyArray<string>) =>
  // Each name in double quotes: a bare NULL in an array literal is a null, not the name.
  `(data #> ${literal(`{${path.map((name) => `"${name}"`).join(",")}}`)}::text[])`

/** The rows an index of the tenant's stream holds, as the index and the filters that use it write it. */
export const indexedRows = (tenant: string, stream: string) =>
  `tenant_id = ${literal(tenant)} AND stream = ${literal(stream)}`

/** The name of the index on the parent table; its partitions' are this name and a hash of the partition's. */
export const indexName = (tenant: string, stream: string, spec: IndexSpec) =>
  `rx_${createHash("sha256").update(JSON.stringify([tenant, stream, spec.path, spec.kind])).digest("hex").slice(0, 20)}`

const specKey = (spec: IndexSpec) => JSON.stringify([spec.path, spec.kind])

/** How often a process looks for a declared index left `building` that no process builds. */
const SWEEP = "15 seconds"
/** The advisory lock (one per database) held by the one process building declared indexes. */
export const BUILDER_LOCK = "strata.stream_indexes"
const LOCK_CONNECT_TIMEOUT = "10 seconds"
const ORPHAN_POLL = "500 millis"

/** How long a replica trusts what it read of a stream's indexes (another replica may declare meanwhile). */
const CACHE_MS = 5_000

export class StreamIndexes extends Context.Service<StreamIndexes, {
  /** Makes the stream's declared set `wanted`: new ones start building, those left out are dropped. */
  readonly declare: (
    tenant: string,
    stream: string,
    wanted: ReadonlyArray<IndexSpec>
  ) => Effect.Effect<ReadonlyArray<DeclaredIndex>, DbError>
  readonly list: (tenant: string, stream: string) => Effect.Effect<ReadonlyArray<DeclaredIndex>, DbError>
  /** The ready ones, from a short cache: what a filtered page may use. */
  readonly ready: (tenant: string, stream: string) => Effect.Effect<ReadonlyArray<IndexSpec>, DbError>
}>()("strata/records/StreamIndexes") {
  static readonly layerPg: Layer.Layer<StreamIndexes, never, PgClient.PgClient | DbPolicy> = Layer.effect(
    StreamIndexes,
    Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      const guard = yield* DbPolicy.callsOf("Db")
      const cache = new Map<string, { readonly at: number; readonly specs: ReadonlyArray<IndexSpec> }>()
      const scope = yield* Effect.scope

      const list = (tenant: string, stream: string) =>
        guard(
          "listIndexes",
          Effect.map(
            sql<{ path: Array<string>; kind: IndexKind; state: IndexState; built: number; partitions: number }>`
              SELECT path, kind, state, built, partitions FROM stream_indexes
              WHERE tenant_id = ${tenant} AND stream = ${stream} ORDER BY declared_at, name`,
            (rows): ReadonlyArray<DeclaredIndex> => rows.map((r) => ({ ...r }))
          )
        )

      const ready = (tenant: string, stream: string) =>
        Effect.gen(function*() {
          const key = `${tenant}\u0000${stream}`
          const now = yield* Clock.currentTimeMillis
          const hit = cache.get(key)
          if (hit !== undefined && now - hit.at < CACHE_MS) return hit.specs
          const specs = (yield* list(tenant, stream)).filter((i) => i.state === "ready")
          cache.set(key, { at: now, specs })
          return specs
        })

      const columns = (spec: IndexSpec) =>
        spec.kind === "gin"
          ? `USING gin (${indexedField(spec.path)} jsonb_path_ops)`
          : `(${indexedField(spec.path)}, occurred_at, id)`

      /** Whether this is the embedded PGlite: one process, one connection, nothing to coordinate with. */
      let embedded: boolean | undefined
      const isEmbedded = Effect.suspend(() =>
        embedded !== undefined ? Effect.succeed(embedded) : Effect.map(
          sql<{ readonly embedded: boolean }>`SELECT strpos(version(), 'PGlite') > 0 AS embedded`,
          ([row]) => (embedded = row.embedded)
        )
      )

      /**
       * Takes the builders' lock, for the scope, on a connection of its own: a
       * session-level advisory lock, so it goes when this process does (PostgreSQL
       * ends the session when the socket closes). Answers a check that the lock is
       * still held, or None when another process holds it. On PGlite, a check that
       * always answers true.
       */
      const takeLock = Effect.gen(function*() {
        if (yield* isEmbedded) return Option.some(Effect.succeed(true))
        const lock = yield* PgClient.makeClient({
          ...sql.config,
          // Not one of the pool's (DbMetrics counts those by name), and easy to tell in pg_stat_activity.
          applicationName: `${(sql.config.applicationName ?? "strata").slice(0, 55)}:indexes`,
          connectTimeout: LOCK_CONNECT_TIMEOUT
        }).pipe(Effect.provide(Reactivity.layer))
        const [taken] = yield* lock<{ readonly held: boolean }>`
          SELECT pg_try_advisory_lock(hashtextextended(${BUILDER_LOCK}, 0)) AS held`
        if (!taken.held) return Option.none()
        const held: Effect.Effect<boolean> = lock<{ readonly held: boolean }>`
          SELECT EXISTS (
            SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
          ) AS held`.pipe(Effect.map(([row]) => row.held), Effect.orElseSucceed(() => false))
        return Option.some(held)
      })

      /**
       * Waits while a CREATE INDEX of a declared index runs in another session. With
       * the lock held, that is one whose process died (or was cut off) mid-statement:
       * PostgreSQL finishes it and only then notices the client is gone. Its index is
       * valid or dead once it ends, never half made under our feet.
       */
      const orphansDone = Effect.gen(function*() {
        for (let waited = 0;; waited++) {
          const [row] = yield* sql<{ readonly n: number }>`
            SELECT count(*)::int AS n FROM pg_stat_progress_create_index p
            JOIN pg_class i ON i.oid = p.index_relid
            WHERE p.pid <> pg_backend_pid() AND left(i.relname, 3) = 'rx_'
            AND p.datid = (SELECT oid FROM pg_database WHERE datname = current_database())`
          if (row.n === 0) return
          if (waited === 0) yield* Effect.logInfo("declared indexes: waiting for a CREATE INDEX left by a process gone")
          yield* Effect.sleep(ORPHAN_POLL)
        }
      })

      /**
       * Whether a build ended because it was cut off rather than because it cannot be
       * made: interrupted (this process stops), or the database connection lost or
       * the server shutting down or cancelling (SQLSTATE class 57). The index stays
       * `building`, and the next look goes on with it.
       */
      const cutShort = (cause: Cause.Cause<SqlError.SqlError>) => {
        if (Cause.hasInterruptsOnly(cause)) return true
        const error = Result.getOrUndefined(Cause.findError(cause))
        return error !== undefined && fromSqlError(error).reason._tag === "ConnectionLost"
      }

      /**
       * Builds one index partition by partition, from where its last build stopped:
       * partitions already attached are skipped, and an invalid index a cut CREATE
       * INDEX CONCURRENTLY left on one is dropped and made again. Its row says how far
       * it got. Ends early, leaving it `building`, when the lock is lost (another
       * process goes on) or the build is cut short (the next look goes on); any
       * other failure makes it `failed`.
       */
      const build = (tenant: string, stream: string, spec: IndexSpec, name: string, held: Effect.Effect<boolean>) =>
        Effect.gen(function*() {
          const definition = `${columns(spec)} WHERE ${indexedRows(tenant, stream)}`
          yield* sql.unsafe(`CREATE INDEX IF NOT EXISTS "${name}" ON ONLY records ${definition}`)
          // Partitions that have no index attached to this one yet (one made since got it when it was made).
          const missing = yield* sql<{ readonly partition: string }>`
            SELECT c.relname AS partition FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'records'::regclass AND NOT EXISTS (
              SELECT 1 FROM pg_inherits a JOIN pg_index x ON x.indexrelid = a.inhrelid
              WHERE a.inhparent = ${name}::regclass AND x.indrelid = c.oid
            ) ORDER BY c.relname DESC`
          const total = yield* sql<{ readonly n: number }>`
            SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'records'::regclass`
          yield* sql`UPDATE stream_indexes SET partitions = ${total[0].n}, built = ${
            total[0].n - missing.length
          } WHERE name = ${name}`
          for (const { partition } of missing) {
            if (!(yield* held)) {
              return yield* Effect.logWarning("declared indexes: lost the builders' lock; another process goes on", {
                index: name
              })
            }
            const child = `${name}_${createHash("sha256").update(partition).digest("hex").slice(0, 12)}`
            const [left] = yield* sql<{ readonly valid: boolean }>`
              SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass(${child})`
            if (left !== undefined && !left.valid) {
              // What a cut CREATE INDEX CONCURRENTLY leaves: an index that is not built.
              yield* sql.unsafe(`DROP INDEX CONCURRENTLY IF EXISTS "${child}"`)
            }
            yield* sql.unsafe(
              `CREATE INDEX CONCURRENTLY IF NOT EXISTS "${child}" ON "${
                partition.replaceAll("\"", "\"\"")
              }" ${definition}`
            )
            yield* sql.unsafe(`ALTER INDEX "${name}" ATTACH PARTITION "${child}"`)
            yield* sql`UPDATE stream_indexes SET built = built + 1 WHERE name = ${name}`
          }
          const [parent] = yield* sql<{ readonly valid: boolean }>`
            SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = ${name}::regclass`
          if (parent === undefined || !parent.valid) {
            return yield* Effect.die(new Error(`${name} is not valid once every partition's index is attached`))
          }
          yield* sql`UPDATE stream_indexes SET state = 'ready' WHERE name = ${name} AND state = 'building'`
        }).pipe(
          Effect.catchCause((cause) =>
            cutShort(cause)
              ? Effect.failCause(cause)
              : Effect.andThen(
                Effect.logWarning("a declared index failed to build", { index: name, cause }),
                sql`UPDATE stream_indexes SET state = 'failed' WHERE name = ${name}`.pipe(Effect.ignore)
              )
          )
        )

      /**
       * One pass: with the builders' lock, builds every declared index that is
       * `building` (declared here or in another process, or left so by a build cut
       * short), one after another, rereading the list after each so one declared
       * meanwhile is built too. Without the lock (another process builds), nothing.
       */
      const pass = Effect.scoped(Effect.gen(function*() {
        const held = yield* takeLock
        if (Option.isNone(held)) return
        if (!(yield* isEmbedded)) yield* orphansDone
        const tried = new Set<string>()
        // Until none is left, or the lock is lost (the process that takes it goes on).
        while (yield* held.value) {
          const rows = yield* sql<
            { readonly tenant: string; readonly stream: string; path: Array<string>; kind: IndexKind; name: string }
          >`
            SELECT tenant_id AS tenant, stream, path, kind, name FROM stream_indexes
            WHERE state = 'building' ORDER BY declared_at, name`
          const next = rows.find((r) => !tried.has(r.name))
          if (next === undefined) return
          tried.add(next.name)
          yield* build(next.tenant, next.stream, { path: next.path, kind: next.kind }, next.name, held.value)
        }
      })).pipe(
        Effect.catchCause((cause) =>
          Cause.hasInterruptsOnly(cause)
            ? Effect.failCause(cause)
            : Effect.logWarning("declared indexes: a build pass failed; the next look retries", { cause })
        )
      )

      // One pass at a time in a process (two CREATE INDEX CONCURRENTLY on one table
      // wait on each other), and at most one waiting: it rereads the list when it starts.
      const passes = yield* Semaphore.make(1)
      let waiting = false
      const kick = Effect.suspend(() => {
        if (waiting) return Effect.void
        waiting = true
        return Effect.asVoid(Effect.forkIn(
          passes.withPermits(1)(Effect.suspend(() => {
            waiting = false
            return pass
          })),
          scope
        ))
      })

      // At start and every SWEEP: a declared index left `building` (by a process
      // that stopped, or one that lost the lock) is built by whoever takes the lock.
      yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM stream_indexes WHERE state = 'building'`.pipe(
        Effect.flatMap(([row]) => row.n > 0 ? kick : Effect.void),
        Effect.catchCause((cause) =>
          Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : Effect.logDebug("declared indexes: no look", cause)
        ),
        Effect.repeat(Schedule.spaced(SWEEP)),
        Effect.forkIn(scope)
      )

      const declare = (tenant: string, stream: string, wanted: ReadonlyArray<IndexSpec>) =>
        Effect.gen(function*() {
          const current = yield* list(tenant, stream)
          const keep = new Set(wanted.map(specKey))
          for (const old of current) {
            if (keep.has(specKey(old))) continue
            const name = indexName(tenant, stream, old)
            yield* guard("dropIndex", sql.unsafe(`DROP INDEX IF EXISTS "${name}"`))
            yield* guard("dropIndex", sql`DELETE FROM stream_indexes WHERE name = ${name}`)
          }
          const known = new Set(current.map(specKey))
          let toBuild = false
          for (const spec of wanted) {
            const name = indexName(tenant, stream, spec)
            const state = current.find((c) => specKey(c) === specKey(spec))?.state
            if (!known.has(specKey(spec))) {
              yield* guard(
                "declareIndex",
                sql`INSERT INTO stream_indexes (tenant_id, stream, path, kind, name, state)
                  VALUES (${tenant}, ${stream}, ${spec.path}::text[], ${spec.kind}, ${name}, 'building')
                  ON CONFLICT DO NOTHING`
              )
              toBuild = true
            } else if (state === "failed") {
              // Declared again: tried again.
              yield* guard("declareIndex", sql`UPDATE stream_indexes SET state = 'building' WHERE name = ${name}`)
              toBuild = true
            } else if (state === "building") {
              toBuild = true
            }
          }
          if (toBuild) yield* kick
          cache.delete(`${tenant}\u0000${stream}`)
          return yield* list(tenant, stream)
        })

      return StreamIndexes.of({ declare, list, ready })
    })
  )

  /** In memory there is nothing to build: a declared index is ready at once. */
  static readonly layerMemory: Layer.Layer<StreamIndexes> = Layer.sync(StreamIndexes, () => {
    const declared = new Map<string, ReadonlyArray<DeclaredIndex>>()
    const list = (tenant: string, stream: string) => Effect.sync(() => declared.get(`${tenant}\u0000${stream}`) ?? [])
    return StreamIndexes.of({
      declare: (tenant, stream, wanted) =>
        Effect.sync(() => {
          const indexes = wanted.map((w) => ({ ...w, state: "ready" as const, built: 0, partitions: 0 }))
          declared.set(`${tenant}\u0000${stream}`, indexes)
          return indexes
        }),
      list,
      ready: list
    })
  })
}
