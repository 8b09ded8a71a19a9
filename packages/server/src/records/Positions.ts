/**
 * Change feed positions as clients see them (README: Change feed): opaque
 * strings naming a FeedPosition (ChangeLog.ts) and the database epoch it
 * belongs to, signed with HMAC-SHA256 under the tenant's name, like page
 * cursors (Cursor.ts). A position altered, made up or of another tenant does
 * not verify; one of another epoch (a restore, a new primary) verifies but
 * cannot be trusted to name the same changes here, so the feed refuses it
 * (410) rather than skip or repeat.
 */
import { PositionExpired, type ValidationFailed } from "@strata/domain"
import { Context, Effect, Layer, Schedule } from "effect"
import { createHmac, createSecretKey, timingSafeEqual } from "node:crypto"
import { validationFailed } from "../platform/http/Validation.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import type { ReadNeed } from "../platform/sql/ReadReplicas.ts"
import { SharedSecrets } from "../platform/sql/SharedSecrets.ts"
import { ChangeLog, type FeedPosition } from "./ChangeLog.ts"

export type DecodedPosition =
  | { readonly _tag: "Valid"; readonly position: FeedPosition }
  | { readonly _tag: "OtherEpoch" }
  | { readonly _tag: "Invalid" }

const INVALID: DecodedPosition = { _tag: "Invalid" }
const OTHER_EPOCH: DecodedPosition = { _tag: "OtherEpoch" }
const HEX = /^[0-9a-f]{1,16}$/
const EPOCH = /^[A-Za-z0-9_-]{8}$/

export const makePositionCodec = (secret: string | Uint8Array, currentEpoch: () => string) => {
  // A key object made once (Cursor.ts says why).
  const key = createSecretKey(typeof secret === "string" ? Buffer.from(secret) : secret)
  const sign = (tenant: string, payload: string) =>
    createHmac("sha256", key).update(tenant).update("\n").update(payload).digest().subarray(0, 12)

  const encode = (tenant: string, position: FeedPosition): string => {
    const payload = `${currentEpoch()}.${position.xid.toString(16)}.${position.n.toString(16)}`
    return `${payload}.${sign(tenant, payload).toString("base64url")}`
  }

  const decode = (tenant: string, text: string): DecodedPosition => {
    if (text.length > 64) return INVALID
    const parts = text.split(".")
    if (parts.length !== 4) return INVALID
    const [epoch, xid, n, mac] = parts
    if (!EPOCH.test(epoch) || !HEX.test(xid) || !HEX.test(n) || n.length > 8) return INVALID
    const given = Buffer.from(mac, "base64url")
    const expected = sign(tenant, `${epoch}.${xid}.${n}`)
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return INVALID
    if (epoch !== currentEpoch()) return OTHER_EPOCH
    return { _tag: "Valid", position: { xid: BigInt(`0x${xid}`), n: Number.parseInt(n, 16) } }
  }

  return { encode, decode, epoch: currentEpoch }
}
export type PositionCodec = ReturnType<typeof makePositionCodec>

/**
 * The horizon a node must have reached to hold everything up to `position`:
 * (x, n) with n > 0 names changes of transaction x, so x must have finished;
 * (x, 0) names every transaction before x.
 */
export const horizonNeeded = (position: FeedPosition): bigint => position.n === 0 ? position.xid : position.xid + 1n

/** How often a process reads the database's epoch again: a failover is noticed within this. */
const EPOCH_CHECK = "5 seconds"

/**
 * The position codec, keyed with the secret every replica shares, on the
 * database's current epoch; and `check`, the one verdict on a position a
 * client sends (`after=`, `Last-Event-ID`, `Strata-Position`).
 */
export class Positions extends Context.Service<
  Positions,
  PositionCodec & {
    /**
     * The position `text` names for `tenant`: a 400 naming `path` when it is not
     * one we issued to this tenant; a 410 naming the earliest position when it is
     * older than what retention kept, of another epoch, or ahead of everything
     * this database ever assigned (a restore to an earlier state).
     */
    readonly check: (
      tenant: string,
      text: string,
      path: string
    ) => Effect.Effect<FeedPosition, ValidationFailed | PositionExpired | DbError>
    /** The oldest position the feed serves: where `earliest` starts. */
    readonly earliest: Effect.Effect<FeedPosition, DbError>
    /**
     * What a read that sends `text` (Strata-Position) needs of a replica
     * (ReadReplicas): a 400 naming `path` when it is not a position we issued to
     * this tenant. One of another epoch (a failover, a restore) is read on the
     * primary, which holds whatever survived it: a read is never refused for it.
     */
    readonly needOf: (tenant: string, text: string, path: string) => Effect.Effect<ReadNeed, ValidationFailed>
  }
>()("strata/records/Positions") {
  static readonly layer: Layer.Layer<Positions, never, SharedSecrets | ChangeLog> = Layer.effect(
    Positions,
    Effect.gen(function*() {
      const secret = yield* Effect.orDie(SharedSecrets.use((secrets) => secrets.get("position")))
      const log = yield* ChangeLog
      let epoch = yield* Effect.orDie(log.epoch)
      yield* log.epoch.pipe(
        Effect.tap((now) =>
          now === epoch ? Effect.void : Effect.sync(() => {
            epoch = now
          }).pipe(Effect.andThen(Effect.logWarning("The database's epoch changed (a restore or a new primary)", now)))
        ),
        Effect.ignore,
        Effect.repeat(Schedule.spaced(EPOCH_CHECK)),
        Effect.delay(EPOCH_CHECK),
        Effect.forkScoped
      )
      const codec = makePositionCodec(secret, () => epoch)
      const earliest = Effect.map(log.earliest, (xid): FeedPosition => ({ xid, n: 0 }))
      const expired = (tenant: string, why: string) =>
        Effect.flatMap(earliest, (first) =>
          Effect.fail(
            new PositionExpired({
              detail: `${why}; go on from earliestPosition (or list again)`,
              earliestPosition: codec.encode(tenant, first)
            })
          ))
      const check = (tenant: string, text: string, path: string) =>
        Effect.gen(function*() {
          const decoded = codec.decode(tenant, text)
          if (decoded._tag === "Invalid") {
            return yield* validationFailed([{ path, message: "is not a position we issued to this tenant" }])
          }
          if (decoded._tag === "OtherEpoch") {
            return yield* expired(tenant, "The position is of another database epoch (a restore or a new primary)")
          }
          const position = decoded.position
          const first = yield* log.earliest
          if (position.xid < first) return yield* expired(tenant, "The position is older than FEED_RETENTION kept")
          const { next } = yield* log.horizon
          if (position.xid > next) {
            return yield* expired(
              tenant,
              "The position is ahead of this database (was it restored to an earlier state?)"
            )
          }
          return position
        })
      const needOf = (tenant: string, text: string, path: string) => {
        const decoded = codec.decode(tenant, text)
        return decoded._tag === "Invalid"
          ? validationFailed([{ path, message: "is not a position we issued to this tenant" }])
          : Effect.succeed(decoded._tag === "OtherEpoch" ? "primary" as const : horizonNeeded(decoded.position))
      }
      return Positions.of({ ...codec, check, earliest, needOf })
    })
  )
}
