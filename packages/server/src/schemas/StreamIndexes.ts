/**
 * Declared indexes (README: Declared indexes): the paths of `data` a tenant
 * filters on in a stream, each an index on `records` restricted to that tenant
 * and stream. A btree on the field, then (occurred_at, id), serves comparisons
 * in page order; a GIN `jsonb_path_ops` on the field serves `contains` only.
 *
 * On PostgreSQL an index is made on the parent alone (`ON ONLY`, invalid), then
 * built on each partition with CREATE INDEX CONCURRENTLY, so writes go on, and
 * attached; once every partition's is attached the parent's is valid, and the
 * partitions made later get it when they are created (`PARTITION OF`).
 *
 * Declared paths are names of letters, digits, `_` and `-`: their SQL form (the
 * index expression, which a filter must repeat word for word to use the index,
 * whatever plan_cache_mode) is then safe by construction. Values stay parameters.
 */
import { PgClient } from "@effect/sql-pg"
import { Clock, Context, Effect, Layer, Semaphore } from "effect"
import { createHash } from "node:crypto"
import type { DbError } from "../platform/sql/DbError.ts"
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

const nameOf = (tenant: string, stream: string, spec: IndexSpec) =>
  `rx_${createHash("sha256").update(JSON.stringify([tenant, stream, spec.path, spec.kind])).digest("hex").slice(0, 20)}`

const specKey = (spec: IndexSpec) => JSON.stringify([spec.path, spec.kind])

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
      // One build at a time in a process: two CREATE INDEX CONCURRENTLY on one table wait on each other.
      const building = yield* Semaphore.make(1)

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

      /** Builds one index partition by partition; its row says how far it got. */
      const build = (tenant: string, stream: string, spec: IndexSpec, name: string) =>
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
            const child = `${name}_${createHash("sha256").update(partition).digest("hex").slice(0, 12)}`
            yield* sql.unsafe(
              `CREATE INDEX CONCURRENTLY IF NOT EXISTS "${child}" ON "${
                partition.replaceAll("\"", "\"\"")
              }" ${definition}`
            )
            yield* sql.unsafe(`ALTER INDEX "${name}" ATTACH PARTITION "${child}"`)
            yield* sql`UPDATE stream_indexes SET built = built + 1 WHERE name = ${name}`
          }
          yield* sql`UPDATE stream_indexes SET state = 'ready' WHERE name = ${name}`
        }).pipe(
          Effect.catchCause((cause) =>
            Effect.andThen(
              Effect.logWarning("a declared index failed to build", { index: name, cause }),
              sql`UPDATE stream_indexes SET state = 'failed' WHERE name = ${name}`.pipe(Effect.ignore)
            )
          )
        )

      const declare = (tenant: string, stream: string, wanted: ReadonlyArray<IndexSpec>) =>
        Effect.gen(function*() {
          const current = yield* list(tenant, stream)
          const keep = new Set(wanted.map(specKey))
          for (const old of current) {
            if (keep.has(specKey(old))) continue
            const name = nameOf(tenant, stream, old)
            yield* guard("dropIndex", sql.unsafe(`DROP INDEX IF EXISTS "${name}"`))
            yield* guard("dropIndex", sql`DELETE FROM stream_indexes WHERE name = ${name}`)
          }
          const known = new Set(current.map(specKey))
          for (const spec of wanted) {
            const name = nameOf(tenant, stream, spec)
            const fresh = !known.has(specKey(spec))
            if (fresh) {
              yield* guard(
                "declareIndex",
                sql`INSERT INTO stream_indexes (tenant_id, stream, path, kind, name, state)
                  VALUES (${tenant}, ${stream}, ${spec.path}::text[], ${spec.kind}, ${name}, 'building')
                  ON CONFLICT DO NOTHING`
              )
            }
            // A new one, or one a crash left half built, is built (again) in the background.
            const state = current.find((c) => specKey(c) === specKey(spec))?.state
            if (fresh || state !== "ready") {
              yield* Effect.forkDetach(building.withPermits(1)(build(tenant, stream, spec, name)))
            }
          }
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
