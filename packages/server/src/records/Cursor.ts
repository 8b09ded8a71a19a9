/**
 * Opaque page cursors for `GET /data`. A cursor names the last row of a page and
 * the query it belongs to, and is signed with HMAC-SHA256, so a cursor we did not
 * issue, or one replayed against another stream, key, order, filter set or tenant, is refused.
 */
import { Context, Effect, Layer } from "effect"
import { createHmac, createSecretKey, timingSafeEqual } from "node:crypto"
import { SharedSecrets } from "../platform/sql/SharedSecrets.ts"

export interface CursorPosition {
  readonly occurredAt: Date
  readonly id: string
}

export interface CursorScope {
  readonly tenant: string
  readonly stream: string
  readonly key: string | undefined
  readonly order: "asc" | "desc"
  /** The page's filter set (Filters.filterSetKey), if any: a cursor is refused with other filters. */
  readonly filters?: string | undefined
}

const scopeOf = (s: CursorScope) =>
  s.filters === undefined
    ? [s.tenant, s.stream, s.key ?? null, s.order]
    : [s.tenant, s.stream, s.key ?? null, s.order, s.filters]

export const makeCursorCodec = (secret: string | Uint8Array) => {
  // A key object made once: given the secret itself, createHmac makes one per call, 4-5x the cost of the MAC.
  const key = createSecretKey(typeof secret === "string" ? Buffer.from(secret) : secret)
  const sign = (payload: string) => createHmac("sha256", key).update(payload).digest().subarray(0, 16)

  const encode = (scope: CursorScope, position: CursorPosition): string => {
    const payload = Buffer.from(JSON.stringify([position.occurredAt.getTime(), position.id])).toString("base64url")
    const mac = sign(JSON.stringify([...scopeOf(scope), payload])).toString("base64url")
    return `${payload}.${mac}`
  }

  /** The position in `cursor`, or undefined when it is not a cursor we issued for this scope. */
  const decode = (scope: CursorScope, cursor: string): CursorPosition | undefined => {
    const [payload, mac, ...rest] = cursor.split(".")
    if (payload === undefined || mac === undefined || rest.length > 0) return undefined
    const expected = sign(JSON.stringify([...scopeOf(scope), payload]))
    const given = Buffer.from(mac, "base64url")
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined
    try {
      const [ms, id] = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as [number, string]
      return { occurredAt: new Date(ms), id }
    } catch {
      return undefined
    }
  }

  return { encode, decode }
}
export type CursorCodec = ReturnType<typeof makeCursorCodec>

/** The cursor codec, keyed with the secret every replica shares through the database. */
export class Cursors extends Context.Service<Cursors, CursorCodec>()("strata/records/Cursors") {
  // Built with the other services, before the server listens, so no request waits on it.
  static readonly layer: Layer.Layer<Cursors, never, SharedSecrets> = Layer.effect(
    Cursors,
    Effect.map(Effect.orDie(SharedSecrets.use((secrets) => secrets.get("cursor"))), makeCursorCodec)
  )
}
