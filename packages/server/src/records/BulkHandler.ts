/**
 * `POST /data/bulk` over HTTP: the body's type, coding and declared size (415,
 * 413), then BulkIngest reads it as it arrives; the 200 comes after every
 * accepted record is committed. With an Idempotency-Key, the hash of the body
 * (taken as it is read) is claimed before anything is written.
 */
import { type BulkMode, PayloadTooLarge, Principal, UnsupportedMediaType } from "@strata/domain"
import { Effect, Result } from "effect"
import type { HttpServerRequest } from "effect/http"
import { idempotentlyHashed, isIdempotencyKey, requestHash } from "../idempotency/Idempotency.ts"
import { IdempotencyStore } from "../idempotency/IdempotencyStore.ts"
import { HttpConfig } from "../platform/config/HttpConfig.ts"
import { codingOf } from "../platform/http/ContentCoding.ts"
import { isNdjsonContentType, isUtf8 } from "../platform/http/JsonBody.ts"
import { unavailableOnTransient } from "../platform/http/Problems.ts"
import { validationFailed } from "../platform/http/Validation.ts"
import { currentTraceparent } from "../platform/observability/Tracing.ts"
import { BulkIngest, bulkResultText } from "./BulkIngest.ts"
import { Positions } from "./Positions.ts"

/** The handler of `POST /data/bulk`, made with its services. */
export const makeBulkHandler = Effect.gen(function*() {
  const bulk = yield* BulkIngest
  const idempotency = yield* IdempotencyStore
  const config = yield* HttpConfig
  const positions = yield* Positions

  return (request: HttpServerRequest.HttpServerRequest, mode: BulkMode, idempotencyKey: string | undefined) =>
    Effect.gen(function*() {
      const contentType = request.headers["content-type"]
      if (!isNdjsonContentType(contentType) || !isUtf8(contentType!)) {
        return yield* new UnsupportedMediaType({
          detail: "Send the body as application/x-ndjson (or application/jsonl), UTF-8"
        })
      }
      const coding = codingOf(request.headers["content-encoding"])
      if (Result.isFailure(coding)) return yield* coding.failure
      if (coding.success === null && Number(request.headers["content-length"] ?? 0) > config.maxBulkBytes) {
        return yield* new PayloadTooLarge({
          detail: `The body may be at most ${config.maxBulkBytes} bytes (MAX_BULK_BYTES)`
        })
      }
      if (idempotencyKey !== undefined && !isIdempotencyKey(idempotencyKey)) {
        return yield* validationFailed([{
          path: "idempotency-key",
          message: "must be 1 to 255 visible ASCII characters"
        }])
      }
      const tenant = (yield* Principal).tenant
      const hash = idempotencyKey === undefined ? undefined : requestHash(request.method, request.url)
      const read = yield* bulk.read({
        tenant,
        body: request.stream,
        coding: coding.success,
        mode,
        traceparent: yield* currentTraceparent,
        onSent: hash?.update
      })
      return yield* idempotentlyHashed(
        idempotency,
        tenant,
        idempotencyKey,
        Effect.sync(() => hash!.digest()),
        Effect.map(bulk.write(read), (written) => ({
          status: 200,
          text: bulkResultText(written),
          position: written.position === undefined ? null : positions.encode(tenant, written.position)
        }))
      )
    }).pipe(Effect.catchTag("DbError", unavailableOnTransient))
})
