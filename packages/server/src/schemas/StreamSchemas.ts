/**
 * What the write path needs of stream schemas (README: Schemas): each stream's current
 * version, compiled once per (tenant, stream, version) and kept per process.
 *
 * Which version is current is kept in process for SCHEMA_CACHE_TTL, "no
 * schema" included: another replica's registration is enforced here within
 * that time (the staleness bound in the README); this replica's own at once.
 * `peek` answers synchronously for the hot routes (one Map lookup); `current`
 * reads through, one database read per stream at a time. A copy used in the
 * second half of its time is read again in the background (RefreshingCache), so
 * a stream in steady use never finds its copy expired: its writes neither wait
 * for the read nor leave the hot route for it (they did, on every stream every 2 s).
 *
 * Registration and the check of a candidate against recent records live here
 * too, since both compile untrusted schemas under the same rules.
 */
import {
  type Compatibility,
  type FieldError,
  InvalidSchema,
  type SchemaCheck,
  SchemaIncompatible,
  type ValidationFailed
} from "@strata/domain"
import type { ValidateFunction } from "ajv/dist/2020.js"
import { Context, Duration, Effect, Layer, Option } from "effect"
import { makeRefreshingCache } from "../platform/cache/RefreshingCache.ts"
import { CacheConfig } from "../platform/config/CacheConfig.ts"
import { LimitsConfig } from "../platform/config/LimitsConfig.ts"
import { validationFailed } from "../platform/http/Validation.ts"
import { jsonText } from "../platform/json/ExactJson.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import { SchemaCompiler } from "./SchemaCompiler.ts"
import { SchemaRegistry, type SchemaVersion } from "./SchemaRegistry.ts"
import { violations } from "./SchemaRules.ts"
import { StreamSamples } from "./StreamSamples.ts"

/** A stream's current schema, ready to validate with. */
export interface CompiledSchema {
  readonly version: number
  /** True when `data` satisfies the schema (no allocation beyond ajv's own). */
  readonly accepts: (data: unknown) => boolean
  /** The violations of `data`, under `prefix` (`data`, `records[3].data`). */
  readonly violations: (data: unknown, prefix: string) => ReadonlyArray<FieldError>
}

const MAX_COMPILED = 10_000
/** A check answers this many failures at most. */
const MAX_CHECK_ERRORS = 100

// NUL cannot occur in a tenant or a stream name, so these keys split back unambiguously.
const keyOf = (tenant: string, stream: string) => `${tenant}\u0000${stream}`
const streamOf = (key: string) => key.split("\u0000") as [tenant: string, stream: string]
/** A compiled validator's key: one per (tenant, stream, version). */
const versionKeyOf = (tenant: string, stream: string, version: number) => `${keyOf(tenant, stream)}\u0000${version}`

const compiledOf = (version: number, validate: ValidateFunction): CompiledSchema => ({
  version,
  accepts: (data) => violations(validate, version, data, "").length === 0,
  violations: (data, prefix) => violations(validate, version, data, prefix)
})

export class StreamSchemas extends Context.Service<StreamSchemas, {
  /** The cached current schema: `null` when the stream has none, `undefined` when not known here (or stale). */
  readonly peekUnsafe: (tenant: string, stream: string) => CompiledSchema | null | undefined
  readonly current: (tenant: string, stream: string) => Effect.Effect<CompiledSchema | null, DbError>
  /**
   * Validates each record's `data` against its stream's current schema; answers
   * the version each was validated against (null: none), or every violation.
   */
  readonly validate: (
    tenant: string,
    records: ReadonlyArray<{ readonly stream: string; readonly data: unknown }>,
    prefixOf: (index: number) => string
  ) => Effect.Effect<ReadonlyArray<number | null>, ValidationFailed | DbError>
  /** Validates the stream's most recent records against a candidate; stores nothing. */
  readonly check: (
    tenant: string,
    stream: string,
    schema: unknown
  ) => Effect.Effect<SchemaCheck, InvalidSchema | DbError>
  readonly register: (
    tenant: string,
    stream: string,
    schema: unknown,
    compatibility: Compatibility
  ) => Effect.Effect<
    { readonly created: boolean; readonly version: SchemaVersion },
    InvalidSchema | SchemaIncompatible | DbError
  >
}>()("strata/schemas/StreamSchemas") {
  static readonly layer: Layer.Layer<
    StreamSchemas,
    never,
    SchemaRegistry | StreamSamples | CacheConfig | LimitsConfig | SchemaCompiler
  > = Layer
    .effect(
      StreamSchemas,
      Effect.gen(function*() {
        const registry = yield* SchemaRegistry
        const samples = yield* StreamSamples
        const config = { ...(yield* CacheConfig), ...(yield* LimitsConfig) }
        const compiler = yield* SchemaCompiler
        const compiled = new Map<string, CompiledSchema>()
        const keep = (key: string, schema: CompiledSchema) => {
          if (!compiled.has(key) && compiled.size >= MAX_COMPILED) compiled.delete(compiled.keys().next().value!)
          compiled.set(key, schema)
        }

        const compile = (tenant: string, found: SchemaVersion): Effect.Effect<CompiledSchema> => {
          const key = versionKeyOf(tenant, found.stream, found.version)
          const known = compiled.get(key)
          if (known !== undefined) return Effect.succeed(known)
          return compiler.compile(found.schema, Number.MAX_SAFE_INTEGER).pipe(
            // Accepted at registration under the same rules, so this compiles.
            Effect.catch((problems) =>
              Effect.die(
                new Error(
                  `stored schema ${found.stream} v${found.version} no longer compiles: ${problems[0]?.message}`
                )
              )
            ),
            Effect.map((validate) => {
              const schema = compiledOf(found.version, validate)
              keep(key, schema)
              return schema
            })
          )
        }

        /** Which version is current, per stream: one registry read per stream at a time, refreshed ahead. */
        const currents = yield* makeRefreshingCache<CompiledSchema | null, DbError>({
          ttlMs: Duration.toMillis(config.schemaCacheTtl),
          capacity: MAX_COMPILED,
          load: (key) => {
            const [tenant, stream] = streamOf(key)
            return registry.current(tenant, stream).pipe(
              Effect.flatMap(
                Option.match({ onNone: () => Effect.succeed(null), onSome: (found) => compile(tenant, found) })
              )
            )
          },
          // Versions only grow: a read that began before this replica registered a
          // newer one (a refresh in the background, say) must not undo it.
          replaces: (loaded, held) => (loaded?.version ?? 0) >= (held?.version ?? 0)
        })
        const peek = (tenant: string, stream: string) => currents.peekUnsafe(keyOf(tenant, stream))
        const current = (tenant: string, stream: string) => currents.get(keyOf(tenant, stream))

        const validate = (
          tenant: string,
          records: ReadonlyArray<{ readonly stream: string; readonly data: unknown }>,
          prefixOf: (index: number) => string
        ) =>
          Effect.gen(function*() {
            const versions: Array<number | null> = []
            const errors: Array<FieldError> = []
            for (let i = 0; i < records.length; i++) {
              const schema = yield* current(tenant, records[i].stream)
              versions.push(schema?.version ?? null)
              if (schema !== null) errors.push(...schema.violations(records[i].data, prefixOf(i)))
            }
            if (errors.length > 0) return yield* Effect.fail(validationFailed(errors))
            return versions
          })

        const compileCandidate = (schema: unknown) =>
          compiler.compile(schema, config.maxSchemaBytes).pipe(
            Effect.mapError((problems) =>
              new InvalidSchema({
                detail: `The schema cannot be accepted: ${problems[0]?.path} ${problems[0]?.message}`,
                errors: problems
              })
            )
          )

        /** The stream's most recent records against a compiled candidate. */
        const checkWith = (tenant: string, stream: string, validateFn: ValidateFunction) =>
          Effect.gen(function*() {
            const records = yield* samples.recent(tenant, stream, config.schemaCheckRecords)
            const errors: Array<FieldError> = []
            let failed = 0
            for (const record of records) {
              const found = violations(validateFn, 0, record.data, "data")
              if (found.length === 0) continue
              failed++
              for (const { schemaVersion: _, ...error } of found) {
                if (errors.length < MAX_CHECK_ERRORS) errors.push({ ...error, recordId: record.id })
              }
            }
            return { checked: records.length, passed: records.length - failed, failed, errors }
          })

        const check = (tenant: string, stream: string, schema: unknown) =>
          Effect.flatMap(compileCandidate(schema), (validateFn) => checkWith(tenant, stream, validateFn))

        const register = (tenant: string, stream: string, schema: unknown, compatibility: Compatibility) =>
          Effect.gen(function*() {
            // Compiled once: for the checks, the compatibility check and this replica's validator.
            const validateFn = yield* compileCandidate(schema)
            // The current schema again is a no-op, whatever recent records say.
            const existing = yield* registry.current(tenant, stream)
            if (Option.isSome(existing) && jsonText(existing.value.schema) === jsonText(schema)) {
              return { created: false, version: existing.value }
            }
            if (compatibility === "backward") {
              const result = yield* checkWith(tenant, stream, validateFn)
              if (result.failed > 0) {
                return yield* new SchemaIncompatible({
                  detail: `${result.failed} of the stream's ${result.checked} most recent records fail the new schema`,
                  errors: result.errors
                })
              }
            }
            const registered = yield* registry.register(tenant, stream, schema, compatibility)
            // This replica enforces its own registration at once (a racing no-op may
            // answer a version stored by another request: compile that one).
            if (registered.created) {
              const version = registered.version.version
              keep(versionKeyOf(tenant, stream, version), compiledOf(version, validateFn))
            }
            currents.set(keyOf(tenant, stream), yield* compile(tenant, registered.version))
            return registered
          })

        return StreamSchemas.of({ peekUnsafe: peek, current, validate, check, register })
      })
    )
}
