/**
 * Remembered answers for `Idempotency-Key` (README: The API), per tenant and key, kept
 * IDEMPOTENCY_TTL. A key is claimed with one atomic insert, so of many concurrent
 * requests with one key — on one process or several sharing the database —
 * exactly one runs. A claim whose owner vanished (crash) is taken over after
 * IDEMPOTENCY_LEASE.
 */
import { PgClient } from "@effect/sql-pg"
import { Clock, Context, Duration, Effect, Layer } from "effect"
import { LimitsConfig } from "../platform/config/LimitsConfig.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import { DbPolicy } from "../platform/sql/DbPolicy.ts"

export interface RememberedResponse {
  readonly status: number
  readonly body: string
  readonly location: string | null
  /** The write's change feed position (Strata-Position), for the replay; null for answers remembered before it existed. */
  readonly position: string | null
}

export type Claim =
  | { readonly _tag: "Claimed" }
  | { readonly _tag: "Replay"; readonly response: RememberedResponse }
  | { readonly _tag: "InFlight" }
  | { readonly _tag: "Mismatch" }

export class IdempotencyStore extends Context.Service<IdempotencyStore, {
  /** Claims `key` for a request whose body hashes to `hash`, or says why not. */
  readonly claim: (tenant: string, key: string, hash: string) => Effect.Effect<Claim, DbError>
  /** Remembers the answer of a claimed key. */
  readonly complete: (tenant: string, key: string, response: RememberedResponse) => Effect.Effect<void, DbError>
  /** Forgets a claimed key whose request failed, so the client may try again. */
  readonly release: (tenant: string, key: string) => Effect.Effect<void, DbError>
  /** Deletes expired keys; answers how many. */
  readonly purgeExpired: Effect.Effect<number, DbError>
}>()("strata/idempotency/IdempotencyStore") {
  static readonly layerPg: Layer.Layer<IdempotencyStore, never, PgClient.PgClient | LimitsConfig | DbPolicy> = Layer
    .effect(
      IdempotencyStore,
      Effect.gen(function*() {
        const sql = yield* PgClient.PgClient
        const config = yield* LimitsConfig
        const ttl = `${Duration.toMillis(config.idempotencyTtl)} milliseconds`
        const lease = `${Duration.toMillis(config.idempotencyLease)} milliseconds`
        const guard = yield* DbPolicy.callsOf("IdempotencyStore")

        interface Row {
          readonly request_hash: string
          readonly status: number | null
          readonly body: string | null
          readonly location: string | null
          readonly position: string | null
        }

        const claim = (tenant: string, key: string, hash: string) =>
          guard(
            "claim",
            Effect.gen(function*() {
              // Take the key if it is free, expired, or held by a claim older than the lease.
              const taken = yield* sql<{ readonly key: string }>`
              INSERT INTO idempotency_keys (tenant_id, key, request_hash, expires_at)
              VALUES (${tenant}, ${key}, ${hash}, now() + ${ttl}::interval)
              ON CONFLICT (tenant_id, key) DO UPDATE
                SET request_hash = EXCLUDED.request_hash, status = NULL, body = NULL, location = NULL, position = NULL,
                    created_at = now(), expires_at = EXCLUDED.expires_at
                WHERE idempotency_keys.expires_at < now()
                   OR (idempotency_keys.status IS NULL AND idempotency_keys.created_at < now() - ${lease}::interval)
              RETURNING key`
              if (taken.length > 0) return { _tag: "Claimed" } as const
              const [row] = yield* sql<Row>`
              SELECT request_hash, status, body, location, position FROM idempotency_keys
              WHERE tenant_id = ${tenant} AND key = ${key}`
              if (row === undefined) return { _tag: "InFlight" } as const // released meanwhile: let the client retry
              if (row.request_hash !== hash) return { _tag: "Mismatch" } as const
              if (row.status === null || row.body === null) return { _tag: "InFlight" } as const
              return {
                _tag: "Replay",
                response: { status: row.status, body: row.body, location: row.location, position: row.position }
              } as const
            }),
            "write"
          )

        return IdempotencyStore.of({
          claim,
          complete: (tenant, key, r) =>
            guard(
              "complete",
              Effect.asVoid(
                sql`UPDATE idempotency_keys SET status = ${r.status}, body = ${r.body}, location = ${r.location},
                position = ${r.position}
              WHERE tenant_id = ${tenant} AND key = ${key}`
              )
            ),
          release: (tenant, key) =>
            guard(
              "release",
              Effect.asVoid(
                sql`DELETE FROM idempotency_keys WHERE tenant_id = ${tenant} AND key = ${key} AND status IS NULL`
              )
            ),
          purgeExpired: guard(
            "purgeExpired",
            Effect.map(
              sql<
                { readonly n: number }
              >`WITH gone AS (DELETE FROM idempotency_keys WHERE expires_at < now() RETURNING 1)
              SELECT count(*)::int AS n FROM gone`,
              (rows) => rows[0].n
            )
          )
        })
      })
    )

  static readonly layerMemory: Layer.Layer<IdempotencyStore, never, LimitsConfig> = Layer.effect(
    IdempotencyStore,
    Effect.gen(function*() {
      const config = yield* LimitsConfig
      const ttl = Duration.toMillis(config.idempotencyTtl)
      const lease = Duration.toMillis(config.idempotencyLease)
      // Expiry and leases run on the Clock the layer is built with, so tests can move time.
      const clock = yield* Clock.clockWith(Effect.succeed)
      const keys = new Map<
        string,
        { hash: string; createdAt: number; expiresAt: number; response: RememberedResponse | undefined }
      >()
      const id = (tenant: string, key: string) => JSON.stringify([tenant, key])
      return IdempotencyStore.of({
        claim: (tenant, key, hash) =>
          Effect.sync((): Claim => {
            const now = clock.currentTimeMillisUnsafe()
            const entry = keys.get(id(tenant, key))
            if (
              entry === undefined || entry.expiresAt < now ||
              (entry.response === undefined && entry.createdAt < now - lease)
            ) {
              keys.set(id(tenant, key), { hash, createdAt: now, expiresAt: now + ttl, response: undefined })
              return { _tag: "Claimed" }
            }
            if (entry.hash !== hash) return { _tag: "Mismatch" }
            if (entry.response === undefined) return { _tag: "InFlight" }
            return { _tag: "Replay", response: entry.response }
          }),
        complete: (tenant, key, response) =>
          Effect.sync(() => {
            const entry = keys.get(id(tenant, key))
            if (entry !== undefined) entry.response = response
          }),
        release: (tenant, key) =>
          Effect.sync(() => {
            const entry = keys.get(id(tenant, key))
            if (entry !== undefined && entry.response === undefined) keys.delete(id(tenant, key))
          }),
        purgeExpired: Effect.sync(() => {
          const now = clock.currentTimeMillisUnsafe()
          let n = 0
          for (const [k, entry] of keys) {
            if (entry.expiresAt < now) {
              keys.delete(k)
              n++
            }
          }
          return n
        })
      })
    })
  )
}
