/**
 * `Idempotency-Key` on the POST routes (README: The API). The first request with a key
 * runs and its 201 is remembered; the same key with the same body replays it
 * (`Idempotent-Replayed: true`, no new record, no new event); with another body
 * it is a 422; while the first still runs, a 409. A request that fails is not
 * remembered: it stored nothing, so the client may simply try again.
 */
import { IdempotencyKeyInFlight, IdempotencyKeyReused } from "@strata/domain"
import { Effect, Exit } from "effect"
import type { HttpServerRequest, HttpServerResponse } from "effect/http"
import { createHash } from "node:crypto"
import { type Answer, created, toResponse } from "../platform/http/Answer.ts"
import { validationFailed } from "../platform/http/Validation.ts"
import type { DbError } from "../platform/sql/DbError.ts"
import type { IdempotencyStore, RememberedResponse } from "./IdempotencyStore.ts"

const VISIBLE_ASCII = /^[\x21-\x7e]{1,255}$/

export interface Created {
  /** The answer's JSON text. */
  readonly text: string
  readonly location?: string | undefined
  /** The write's change feed position; null when it stored nothing. */
  readonly position: string | null
  /** 201 unless said otherwise (a bulk write answers 200). */
  readonly status?: number | undefined
}

/** The 201 of a write (Answer.created, as the hot routes send it), marked when it is a replay. */
const respond = (r: RememberedResponse, replayed: boolean) => {
  const answer = r.status === 201 || r.status === 200
    ? created(r.location, r.body, r.position, r.status)
    : { status: r.status, headers: {}, body: r.body } satisfies Answer
  if (replayed) answer.headers["idempotent-replayed"] = "true"
  return toResponse(answer)
}

const remembered = (c: Created): RememberedResponse => ({
  status: c.status ?? 201,
  body: c.text,
  location: c.location ?? null,
  position: c.position
})

/** The hash a request's body is remembered by: its method, its URL and its bytes as sent. */
export const requestHash = (method: string, url: string) => {
  const hash = createHash("sha256").update(`${method} ${url}\n`)
  return {
    update: (bytes: Uint8Array) => void hash.update(bytes),
    digest: () => hash.digest("base64url")
  }
}

/** Runs `create` at most once per (tenant, key, body); answers its 201 or the remembered one. */
export const idempotently = <E, R>(
  store: IdempotencyStore["Service"],
  tenant: string,
  request: HttpServerRequest.HttpServerRequest,
  key: string | undefined,
  create: Effect.Effect<Created, E, R>
) =>
  idempotentlyHashed(
    store,
    tenant,
    key,
    Effect.map(Effect.orDie(request.arrayBuffer), (body) => {
      const hash = requestHash(request.method, request.url)
      hash.update(new Uint8Array(body))
      return hash.digest()
    }),
    create
  )

/**
 * `idempotently` for a body hashed as it was read (`requestHash`), when it
 * cannot be read again: `hash` answers its digest.
 */
export const idempotentlyHashed = <E, R, E2, R2>(
  store: IdempotencyStore["Service"],
  tenant: string,
  key: string | undefined,
  hashOfBody: Effect.Effect<string, E2, R2>,
  create: Effect.Effect<Created, E, R>
) => {
  const run = Effect.map(create, (c) => respond(remembered(c), false))
  if (key === undefined) return run
  return Effect.gen(function*() {
    if (!VISIBLE_ASCII.test(key)) {
      return yield* validationFailed([{
        path: "idempotency-key",
        message: "must be 1 to 255 visible ASCII characters"
      }])
    }
    const hash = yield* hashOfBody
    const claim = yield* store.claim(tenant, key, hash)
    switch (claim._tag) {
      case "Mismatch":
        return yield* new IdempotencyKeyReused({ detail: `Idempotency-Key ${key} was first used with another body` })
      case "InFlight":
        return yield* new IdempotencyKeyInFlight({ detail: `A request with Idempotency-Key ${key} is still running` })
      case "Replay":
        return respond(claim.response, true)
      case "Claimed":
        return yield* create.pipe(
          Effect.map(remembered),
          Effect.tap((r) => store.complete(tenant, key, r)),
          Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : Effect.ignore(store.release(tenant, key))),
          Effect.map((r) => respond(r, false))
        )
    }
  }) as Effect.Effect<
    HttpServerResponse.HttpServerResponse,
    E | E2 | DbError | IdempotencyKeyReused | IdempotencyKeyInFlight | ReturnType<typeof validationFailed>,
    R | R2
  >
}

/** A key is 1–255 visible ASCII characters: the check `idempotently` makes first, for callers that read the body after it. */
export const isIdempotencyKey = (key: string): boolean => VISIBLE_ASCII.test(key)
