/**
 * The stream schema registry (README: Schemas): per tenant and stream, immutable
 * versions numbered 1, 2, 3… `layerPg` keeps them in PostgreSQL (or PGlite),
 * `layerMemory` in process, for tests. The registry stores what it is given;
 * the checks on untrusted schemas happen before (StreamSchemas).
 */
import { PgClient } from "@effect/sql-pg"
import type { Compatibility } from "@strata/domain"
import { Context, Effect, Layer, Option } from "effect"
import { jsonText, parseExact } from "../platform/json/ExactJson.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import { DbPolicy } from "../platform/sql/DbPolicy.ts"

export interface SchemaVersion {
  readonly stream: string
  readonly version: number
  /** The schema in jsonb's key order (numbers exact), as every answer shows it. */
  readonly schema: { readonly [key: string]: unknown }
  readonly compatibility: Compatibility
  readonly createdAt: Date
}

export interface StreamSummary {
  readonly stream: string
  readonly version: number
  readonly createdAt: Date
}

export class SchemaRegistry extends Context.Service<SchemaRegistry, {
  /**
   * Stores `schema` as the stream's next version, unless it equals the current
   * one; answers which happened. Concurrent calls never share a number or leave one out.
   */
  readonly register: (
    tenant: string,
    stream: string,
    schema: unknown,
    compatibility: Compatibility
  ) => Effect.Effect<{ readonly created: boolean; readonly version: SchemaVersion }, DbError>
  readonly current: (tenant: string, stream: string) => Effect.Effect<Option.Option<SchemaVersion>, DbError>
  /** Oldest first. */
  readonly versions: (tenant: string, stream: string) => Effect.Effect<ReadonlyArray<SchemaVersion>, DbError>
  readonly version: (
    tenant: string,
    stream: string,
    version: number
  ) => Effect.Effect<Option.Option<SchemaVersion>, DbError>
  /** The tenant's streams that have a schema, by name, with their current version. */
  readonly streams: (tenant: string) => Effect.Effect<ReadonlyArray<StreamSummary>, DbError>
}>()("strata/schemas/SchemaRegistry") {
  static readonly layerPg: Layer.Layer<SchemaRegistry, never, PgClient.PgClient | DbPolicy> = Layer.effect(
    SchemaRegistry,
    Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      const guard = yield* DbPolicy.callsOf("SchemaRegistry")

      interface Row {
        readonly stream: string
        readonly version: number
        readonly schema: string
        readonly compatibility: Compatibility
        readonly created_at: Date
      }
      const COLUMNS = "stream, version, schema::text AS schema, compatibility, created_at"
      const toVersion = (row: Row): SchemaVersion => {
        const parsed = parseExact(row.schema)
        return {
          stream: row.stream,
          version: row.version,
          schema: (parsed._tag === "Parsed" ? parsed.value : JSON.parse(row.schema)) as SchemaVersion["schema"],
          compatibility: row.compatibility,
          createdAt: row.created_at
        }
      }

      const current = (tenant: string, stream: string) =>
        guard(
          "current",
          sql<Row>`SELECT ${sql.literal(COLUMNS)} FROM stream_schemas
            WHERE tenant_id = ${tenant} AND stream = ${stream} ORDER BY version DESC LIMIT 1`
        ).pipe(Effect.map((rows) => Option.map(Option.fromNullishOr(rows[0]), toVersion)))

      // One statement takes the next number, unless the schema equals the
      // current one. Two registrations racing for a number: the primary key
      // lets one in, the other inserts nothing and tries again with the next.
      const attempt = (tenant: string, stream: string, text: string, compatibility: Compatibility) =>
        guard(
          "register",
          sql<Row & { readonly same: boolean | null }>`
            WITH cur AS (
              SELECT version, schema FROM stream_schemas
              WHERE tenant_id = ${tenant} AND stream = ${stream} ORDER BY version DESC LIMIT 1
            ), inserted AS (
              INSERT INTO stream_schemas (tenant_id, stream, version, schema, compatibility)
              SELECT ${tenant}, ${stream}, coalesce((SELECT version FROM cur), 0) + 1, ${text}::jsonb, ${compatibility}
              WHERE NOT EXISTS (SELECT 1 FROM cur WHERE schema = ${text}::jsonb)
              ON CONFLICT DO NOTHING
              RETURNING ${sql.literal(COLUMNS)}
            )
            SELECT ${sql.literal(COLUMNS)}, NULL::boolean AS same FROM inserted
            UNION ALL
            SELECT stream, version, schema::text, compatibility, created_at, true FROM stream_schemas
            WHERE tenant_id = ${tenant} AND stream = ${stream}
              AND version = (SELECT version FROM cur) AND schema = ${text}::jsonb`
        )

      const register = (
        tenant: string,
        stream: string,
        schema: unknown,
        compatibility: Compatibility
      ): Effect.Effect<{ readonly created: boolean; readonly version: SchemaVersion }, DbError> => {
        const text = jsonText(schema)
        const loop = (tries: number): Effect.Effect<
          { readonly created: boolean; readonly version: SchemaVersion },
          DbError
        > =>
          Effect.flatMap(attempt(tenant, stream, text, compatibility), (rows) => {
            const row = rows[0]
            if (row !== undefined) return Effect.succeed({ created: row.same !== true, version: toVersion(row) })
            // Another registration took the number: each retry sees a newer current version.
            return tries > 0 ? loop(tries - 1) : Effect.die(new Error(`could not number a schema of ${stream}`))
          })
        return loop(100)
      }

      return SchemaRegistry.of({
        register,
        current,
        versions: (tenant, stream) =>
          guard(
            "versions",
            sql<Row>`SELECT ${sql.literal(COLUMNS)} FROM stream_schemas
              WHERE tenant_id = ${tenant} AND stream = ${stream} ORDER BY version`
          ).pipe(Effect.map((rows) => rows.map(toVersion))),
        version: (tenant, stream, version) =>
          guard(
            "version",
            sql<Row>`SELECT ${sql.literal(COLUMNS)} FROM stream_schemas
              WHERE tenant_id = ${tenant} AND stream = ${stream} AND version = ${version}`
          ).pipe(Effect.map((rows) => Option.map(Option.fromNullishOr(rows[0]), toVersion))),
        streams: (tenant) =>
          guard(
            "streams",
            sql<{ readonly stream: string; readonly version: number; readonly created_at: Date }>`
              SELECT DISTINCT ON (stream) stream, version, created_at FROM stream_schemas
              WHERE tenant_id = ${tenant} ORDER BY stream, version DESC`
          ).pipe(
            Effect.map((rows) => rows.map((r) => ({ stream: r.stream, version: r.version, createdAt: r.created_at })))
          )
      })
    })
  )

  static readonly layerMemory: Layer.Layer<SchemaRegistry> = Layer.sync(SchemaRegistry, () => {
    const byStream = new Map<string, Array<SchemaVersion & { readonly text: string }>>()
    const keyOf = (tenant: string, stream: string) => `${tenant}\u0000${stream}`
    const list = (tenant: string, stream: string) => byStream.get(keyOf(tenant, stream)) ?? []
    return SchemaRegistry.of({
      register: (tenant, stream, schema, compatibility) =>
        Effect.sync(() => {
          const text = jsonText(schema)
          const versions = list(tenant, stream)
          const last = versions.at(-1)
          if (last !== undefined && last.text === text) return { created: false, version: last }
          const parsed = parseExact(text)
          const entry = {
            stream,
            version: versions.length + 1,
            // As PostgreSQL gives it back: jsonb's key order.
            schema: (parsed._tag === "Parsed" ? parsed.value : schema) as SchemaVersion["schema"],
            compatibility,
            createdAt: new Date(),
            text
          }
          byStream.set(keyOf(tenant, stream), [...versions, entry])
          return { created: true, version: entry }
        }),
      current: (tenant, stream) => Effect.sync(() => Option.fromNullishOr(list(tenant, stream).at(-1))),
      versions: (tenant, stream) => Effect.sync(() => list(tenant, stream)),
      version: (tenant, stream, version) => Effect.sync(() => Option.fromNullishOr(list(tenant, stream)[version - 1])),
      streams: (tenant) =>
        Effect.sync(() =>
          [...byStream.entries()]
            .filter(([key]) => key.startsWith(`${tenant}\u0000`))
            .map(([, versions]) => versions.at(-1)!)
            .map((v) => ({ stream: v.stream, version: v.version, createdAt: v.createdAt }))
            .toSorted((a, b) => (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : 0))
        )
    })
  })
}
