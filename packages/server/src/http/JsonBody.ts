/**
 * Reads a request body as JSON with the checks SPEC §2 asks for, in this order:
 * content type (415), size before parsing (413), UTF-8 and JSON syntax (400 invalid-json).
 */
import { InvalidJson, PayloadTooLarge, UnsupportedMediaType } from "@strata/domain"
import { ByteSize, Effect } from "effect"
import { HttpIncomingMessage, type HttpServerRequest } from "effect/http"

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i
const utf8 = new TextDecoder("utf-8", { fatal: true })

export const isJsonContentType = (value: string | undefined): boolean => value !== undefined && JSON_TYPE.test(value)

export const readJsonBody = (
  request: HttpServerRequest.HttpServerRequest,
  maxBytes: number
): Effect.Effect<unknown, InvalidJson | PayloadTooLarge | UnsupportedMediaType> => {
  if (!isJsonContentType(request.headers["content-type"])) {
    return Effect.fail(
      new UnsupportedMediaType({
        detail: `Send the body as application/json (got ${request.headers["content-type"] ?? "no Content-Type"})`
      })
    )
  }
  const tooLarge = new PayloadTooLarge({ detail: `The body may be at most ${maxBytes} bytes (MAX_BODY_BYTES)` })
  const declared = Number(request.headers["content-length"] ?? 0)
  if (declared > maxBytes) return Effect.fail(tooLarge)
  return request.arrayBuffer.pipe(
    Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(maxBytes)),
    Effect.mapError((error) =>
      error.reason._tag === "RequestParseError" && error.reason.reason === "BodyTooLarge"
        ? tooLarge
        : new InvalidJson({ detail: "The body could not be read" })
    ),
    Effect.flatMap((buffer) => {
      if (buffer.byteLength === 0) return Effect.fail(new InvalidJson({ detail: "The body is empty" }))
      try {
        return Effect.succeed(JSON.parse(utf8.decode(buffer)) as unknown)
      } catch (error) {
        const detail = error instanceof SyntaxError ? error.message : "The body is not valid UTF-8"
        return Effect.fail(new InvalidJson({ detail }))
      }
    })
  )
}
