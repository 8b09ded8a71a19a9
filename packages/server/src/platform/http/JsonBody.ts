/**
 * Reads a request body as JSON with the checks the README (Input limits) names, in this order:
 * content type, charset and content coding (415), size before parsing, decoded bytes counted (413),
 * a compressed body that does not decode (400 malformed-request), UTF-8 and JSON syntax
 * (400 invalid-json), numbers that could not be kept exactly (400 validation).
 */
import {
  InvalidJson,
  type MalformedRequest,
  PayloadTooLarge,
  UnsupportedMediaType,
  type ValidationFailed
} from "@strata/domain"
import { ByteSize, Effect, Fiber, Result } from "effect"
import { HttpIncomingMessage, type HttpServerRequest } from "effect/http"
import { MAX_DECIMAL_EXPONENT, parseExact } from "../json/ExactJson.ts"
import { codingOf, corruptBody, decodeWhole } from "./ContentCoding.ts"
import { formatPath, validationFailed } from "./Validation.ts"

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i
const utf8 = new TextDecoder("utf-8", { fatal: true })

const CHARSET = /;\s*charset\s*=\s*"?([^";\s]*)/i

export const isJsonContentType = (value: string | undefined): boolean => value !== undefined && JSON_TYPE.test(value)

const NDJSON_TYPE = /^application\/(?:x-ndjson|jsonl|x-jsonlines)\s*(?:;|$)/i

/** NDJSON (one JSON value a line): `application/x-ndjson`, `application/jsonl`, `application/x-jsonlines`. */
export const isNdjsonContentType = (value: string | undefined): boolean =>
  value !== undefined && NDJSON_TYPE.test(value)

/** JSON is UTF-8 (RFC 8259): a body declared in another charset would be misread, so it is refused. */
export const isUtf8 = (contentType: string): boolean => {
  const charset = CHARSET.exec(contentType)?.[1]?.toLowerCase()
  return charset === undefined || charset === "utf-8" || charset === "utf8"
}

/** A client's header, quoted in a problem at a bounded length. */
const quote = (value: string) => JSON.stringify(value.length > 100 ? `${value.slice(0, 100)}…` : value)

/**
 * Bodies already read and parsed before the app got the request (the hot routes
 * hand a request over with its body replayed), by the request they came with,
 * so the app does not parse them again.
 */
const parsedBodies = new WeakMap<object, unknown>()

/** `value` is what `request`'s body parses to (`parseExact`): the app takes it instead of parsing again. */
export const rememberParsedUnsafe = (request: object, value: unknown): void => void parsedBodies.set(request, value)

export const readJsonBody = (
  request: HttpServerRequest.HttpServerRequest,
  maxBytes: number
): Effect.Effect<
  unknown,
  InvalidJson | MalformedRequest | PayloadTooLarge | UnsupportedMediaType | ValidationFailed
> => {
  const contentType = request.headers["content-type"]
  if (contentType === undefined || !isJsonContentType(contentType)) {
    return Effect.fail(
      new UnsupportedMediaType({
        detail: `Send the body as application/json (got ${
          contentType === undefined ? "no Content-Type" : quote(contentType)
        })`
      })
    )
  }
  if (!isUtf8(contentType)) {
    return Effect.fail(
      new UnsupportedMediaType({ detail: `Send the body as UTF-8 JSON (got ${quote(contentType)})` })
    )
  }
  const coding = codingOf(request.headers["content-encoding"])
  if (Result.isFailure(coding)) return Effect.fail(coding.failure)
  const tooLarge = new PayloadTooLarge({
    detail: `The body may be at most ${maxBytes} bytes (MAX_BODY_BYTES)${
      coding.success === null ? "" : ", counted decompressed"
    }`
  })
  const declared = Number(request.headers["content-length"] ?? 0)
  if (declared > maxBytes) return Effect.fail(tooLarge)
  if (parsedBodies.has(request.source)) return Effect.succeed(parsedBodies.get(request.source))
  const sent = request.arrayBuffer.pipe(
    Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(maxBytes))
  )
  // Read in a fiber of its own: interrupting the read destroys the body's stream, and
  // with it the connection, so a request past REQUEST_TIMEOUT whose body is still
  // arriving (a slow client) would get no answer at all instead of its 503.
  return Effect.flatMap(Effect.forkDetach(sent), Fiber.join).pipe(
    Effect.mapError((error) =>
      error.reason._tag === "RequestParseError" && error.reason.reason === "BodyTooLarge"
        ? tooLarge
        : new InvalidJson({ detail: "The body could not be read" })
    ),
    // A compressed body (at most MAX_BODY_BYTES as sent) is decoded up to MAX_BODY_BYTES, no further.
    Effect.flatMap((sent): Effect.Effect<Uint8Array, PayloadTooLarge | MalformedRequest> => {
      if (coding.success === null) return Effect.succeed(new Uint8Array(sent))
      const decoded = decodeWhole(coding.success, new Uint8Array(sent), maxBytes)
      return Result.isSuccess(decoded)
        ? Effect.succeed(decoded.success)
        : Effect.fail(decoded.failure === "TooLarge" ? tooLarge : corruptBody(coding.success))
    }),
    Effect.flatMap((buffer): Effect.Effect<unknown, InvalidJson | ValidationFailed> => {
      if (buffer.byteLength === 0) return Effect.fail(new InvalidJson({ detail: "The body is empty" }))
      try {
        const parsed = parseExact(utf8.decode(buffer))
        return parsed._tag === "Parsed" ? Effect.succeed(parsed.value) : Effect.fail(validationFailed([{
          path: formatPath(parsed.path),
          message:
            `must be a number with a decimal exponent within ±${MAX_DECIMAL_EXPONENT} (it could not be stored exactly)`
        }]))
      } catch (error) {
        const detail = error instanceof SyntaxError ? error.message : "The body is not valid UTF-8"
        return Effect.fail(new InvalidJson({ detail }))
      }
    })
  )
}
