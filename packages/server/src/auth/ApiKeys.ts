/**
 * Tenants and their API keys (README: The API). A key is stored only as its SHA-256
 * hash, bound to one tenant and a set of scopes, revocable, optionally
 * expiring, with optional per-key rate limits. `layerPg` keeps them in
 * PostgreSQL (shared by every replica and the command-line tool),
 * `layerMemory` in process, for tests.
 */
import { PgClient } from "@effect/sql-pg"
import type { Scope } from "@strata/domain"
import { Context, Effect, Layer, Option, Schema } from "effect"
import type { DbError } from "../platform/sql/DbError.ts"
import { DbPolicy } from "../platform/sql/DbPolicy.ts"
import { generateApiKey, hashApiKey } from "./ApiKey.ts"

export interface RateLimitOverride {
  readonly rps: number
  readonly burst: number
}

export interface ApiKeyInfo {
  readonly id: string
  readonly tenant: string
  readonly scopes: ReadonlyArray<Scope>
  readonly createdAt: Date
  readonly expiresAt: Date | null
  readonly revokedAt: Date | null
  readonly lastUsedAt: Date | null
  /** Per-key limits; RATE_LIMIT_RPS / RATE_LIMIT_BURST apply when null. */
  readonly rateLimit: RateLimitOverride | null
}

export interface TenantInfo {
  readonly name: string
  readonly createdAt: Date
}

export interface NewApiKey {
  readonly tenant: string
  readonly scopes: ReadonlyArray<Scope>
  readonly expiresAt?: Date | undefined
  readonly rateLimit?: RateLimitOverride | undefined
}

export class TenantExists extends Schema.TaggedError<TenantExists>()("TenantExists", { tenant: Schema.String }) {
  override get message() {
    return `tenant ${this.tenant} already exists`
  }
}

export class TenantNotFound extends Schema.TaggedError<TenantNotFound>()("TenantNotFound", { tenant: Schema.String }) {
  override get message() {
    return `no tenant ${this.tenant}`
  }
}

export class KeyNotFound extends Schema.TaggedError<KeyNotFound>()("KeyNotFound", { id: Schema.String }) {
  override get message() {
    return `no API key ${this.id}`
  }
}

export class ApiKeys extends Context.Service<ApiKeys, {
  readonly createTenant: (name: string) => Effect.Effect<TenantInfo, TenantExists | DbError>
  /** Every tenant, by name. */
  readonly listTenants: Effect.Effect<ReadonlyArray<TenantInfo>, DbError>
  /** Makes a key; the answer holds the secret, which is never shown again. */
  readonly createKey: (
    key: NewApiKey
  ) => Effect.Effect<{ readonly info: ApiKeyInfo; readonly secret: string }, TenantNotFound | DbError>
  readonly listKeys: (tenant: string) => Effect.Effect<ReadonlyArray<ApiKeyInfo>, TenantNotFound | DbError>
  /** Revokes a key (again is fine); answers it. */
  readonly revokeKey: (id: string) => Effect.Effect<ApiKeyInfo, KeyNotFound | DbError>
  /** The key whose secret hashes to `hash`, revoked and expired ones included. */
  readonly findByHash: (hash: string) => Effect.Effect<Option.Option<ApiKeyInfo>, DbError>
  /** Records that these keys were used at `at` (batched by the caller: not a write per request). */
  readonly touch: (ids: ReadonlyArray<string>, at: Date) => Effect.Effect<void, DbError>
  readonly hasAnyKey: Effect.Effect<boolean, DbError>
}>()("strata/auth/ApiKeys") {
  static readonly layerPg: Layer.Layer<ApiKeys, never, PgClient.PgClient | DbPolicy> = Layer.effect(
    ApiKeys,
    Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      const guard = yield* DbPolicy.callsOf("ApiKeys")

      interface Row {
        readonly id: string
        readonly tenant_id: string
        readonly scopes: ReadonlyArray<string>
        readonly created_at: Date
        readonly expires_at: Date | null
        readonly revoked_at: Date | null
        readonly last_used_at: Date | null
        readonly rate_limit_rps: number | null
        readonly rate_limit_burst: number | null
      }
      const COLUMNS =
        "id, tenant_id, scopes, created_at, expires_at, revoked_at, last_used_at, rate_limit_rps, rate_limit_burst"
      const toInfo = (row: Row): ApiKeyInfo => ({
        id: row.id,
        tenant: row.tenant_id,
        scopes: row.scopes as ReadonlyArray<Scope>,
        createdAt: row.created_at,
        expiresAt: row.expires_at,
        revokedAt: row.revoked_at,
        lastUsedAt: row.last_used_at,
        rateLimit: row.rate_limit_rps !== null && row.rate_limit_burst !== null
          ? { rps: Number(row.rate_limit_rps), burst: row.rate_limit_burst }
          : null
      })
      const tenantExists = (name: string) =>
        guard("tenantExists", sql`SELECT 1 FROM tenants WHERE name = ${name}`).pipe(Effect.map((r) => r.length > 0))

      return ApiKeys.of({
        createTenant: (name) =>
          guard(
            "createTenant",
            sql<{ readonly name: string; readonly created_at: Date }>`INSERT INTO tenants (name) VALUES (${name})
              ON CONFLICT (name) DO NOTHING RETURNING name, created_at`,
            "write"
          ).pipe(
            Effect.flatMap((rows) =>
              rows.length === 0
                ? Effect.fail(new TenantExists({ tenant: name }))
                : Effect.succeed({ name: rows[0].name, createdAt: rows[0].created_at })
            )
          ),
        listTenants: guard(
          "listTenants",
          sql<{ readonly name: string; readonly created_at: Date }>`SELECT name, created_at FROM tenants ORDER BY name`
        ).pipe(Effect.map((rows) => rows.map((r) => ({ name: r.name, createdAt: r.created_at })))),
        createKey: (key) =>
          Effect.gen(function*() {
            if (!(yield* tenantExists(key.tenant))) return yield* new TenantNotFound({ tenant: key.tenant })
            const { id, secret } = generateApiKey()
            const [row] = yield* guard(
              "createKey",
              sql<Row>`INSERT INTO api_keys ${
                sql.insert({
                  id,
                  tenant_id: key.tenant,
                  hash: hashApiKey(secret),
                  scopes: [...key.scopes],
                  expires_at: key.expiresAt ?? null,
                  rate_limit_rps: key.rateLimit?.rps ?? null,
                  rate_limit_burst: key.rateLimit?.burst ?? null
                })
              } RETURNING ${sql.literal(COLUMNS)}`,
              "write"
            )
            return { info: toInfo(row), secret }
          }),
        listKeys: (tenant) =>
          Effect.gen(function*() {
            if (!(yield* tenantExists(tenant))) return yield* new TenantNotFound({ tenant })
            const rows = yield* guard(
              "listKeys",
              sql<Row>`SELECT ${sql.literal(COLUMNS)} FROM api_keys WHERE tenant_id = ${tenant} ORDER BY created_at, id`
            )
            return rows.map(toInfo)
          }),
        revokeKey: (id) =>
          guard(
            "revokeKey",
            sql<Row>`UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = ${id}
              RETURNING ${sql.literal(COLUMNS)}`
          ).pipe(Effect.flatMap(([row]) =>
            row === undefined ? Effect.fail(new KeyNotFound({ id })) : Effect.succeed(toInfo(row))
          )),
        findByHash: (hash) =>
          guard("findByHash", sql<Row>`SELECT ${sql.literal(COLUMNS)} FROM api_keys WHERE hash = ${hash}`).pipe(
            Effect.map((rows) => Option.map(Option.fromNullishOr(rows[0]), toInfo))
          ),
        touch: (ids, at) =>
          ids.length === 0 ? Effect.void : guard(
            "touch",
            Effect.asVoid(sql`UPDATE api_keys SET last_used_at = greatest(last_used_at, ${at})
              WHERE id = ANY(${[...ids]})`)
          ),
        hasAnyKey: guard("hasAnyKey", sql`SELECT 1 FROM api_keys LIMIT 1`).pipe(Effect.map((rows) => rows.length > 0))
      })
    })
  )

  static readonly layerMemory: Layer.Layer<ApiKeys> = Layer.sync(ApiKeys, () => {
    const tenants = new Map<string, Date>()
    const keys = new Map<string, { info: ApiKeyInfo; hash: string }>()
    const update = (id: string, f: (info: ApiKeyInfo) => ApiKeyInfo) => {
      const entry = keys.get(id)
      if (entry !== undefined) entry.info = f(entry.info)
      return entry?.info
    }
    return ApiKeys.of({
      createTenant: (name) =>
        Effect.suspend(() => {
          if (tenants.has(name)) return Effect.fail(new TenantExists({ tenant: name }))
          const createdAt = new Date()
          tenants.set(name, createdAt)
          return Effect.succeed({ name, createdAt })
        }),
      listTenants: Effect.sync(() =>
        [...tenants].map(([name, createdAt]) => ({ name, createdAt })).toSorted((a, b) =>
          a.name < b.name ? -1 : a.name > b.name ? 1 : 0
        )
      ),
      createKey: (key) =>
        Effect.suspend(() => {
          if (!tenants.has(key.tenant)) return Effect.fail(new TenantNotFound({ tenant: key.tenant }))
          const { id, secret } = generateApiKey()
          const info: ApiKeyInfo = {
            id,
            tenant: key.tenant,
            scopes: [...key.scopes],
            createdAt: new Date(),
            expiresAt: key.expiresAt ?? null,
            revokedAt: null,
            lastUsedAt: null,
            rateLimit: key.rateLimit ?? null
          }
          keys.set(id, { info, hash: hashApiKey(secret) })
          return Effect.succeed({ info, secret })
        }),
      listKeys: (tenant) =>
        Effect.suspend(() =>
          tenants.has(tenant)
            ? Effect.succeed([...keys.values()].map((k) => k.info).filter((k) => k.tenant === tenant))
            : Effect.fail(new TenantNotFound({ tenant }))
        ),
      revokeKey: (id) =>
        Effect.suspend(() => {
          const info = update(id, (k) => ({ ...k, revokedAt: k.revokedAt ?? new Date() }))
          return info === undefined ? Effect.fail(new KeyNotFound({ id })) : Effect.succeed(info)
        }),
      findByHash: (hash) =>
        Effect.sync(() => Option.fromNullishOr([...keys.values()].find((k) => k.hash === hash)?.info)),
      touch: (ids, at) =>
        Effect.sync(() => {
          for (const id of ids) {
            update(id, (k) => ({ ...k, lastUsedAt: k.lastUsedAt !== null && k.lastUsedAt > at ? k.lastUsedAt : at }))
          }
        }),
      hasAnyKey: Effect.sync(() => keys.size > 0)
    })
  })
}
