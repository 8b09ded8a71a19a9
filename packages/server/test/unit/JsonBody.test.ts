/**
 * Reading a JSON body (platform/http/JsonBody.ts), and a body the hot routes
 * parsed before handing the request over: the app takes that value, not a second parse.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { HttpServerRequest } from "effect/http"
import { readJsonBody, rememberParsedUnsafe } from "../../src/platform/http/JsonBody.ts"
import { jsonText } from "../../src/platform/json/ExactJson.ts"

const post = (body: string, contentType = "application/json") => {
  const request = new Request("http://strata.test/data", {
    method: "POST",
    headers: { "content-type": contentType },
    body
  })
  return HttpServerRequest.fromWeb(request)
}

describe("readJsonBody", () => {
  it.effect("parses the body, numbers exactly", () =>
    Effect.gen(function*() {
      const value = yield* readJsonBody(post(`{"stream":"s","data":{"n":12345678901234567890}}`), 1024)
      expect(jsonText(value)).toBe(`{"data":{"n":12345678901234567890},"stream":"s"}`)
    }))

  it.effect("takes the value parsed before the hand-over instead of reading the body again", () =>
    Effect.gen(function*() {
      const request = post("this body is never read")
      rememberParsedUnsafe(request.source, { stream: "parsed-before" })
      expect(yield* readJsonBody(request, 1024)).toEqual({ stream: "parsed-before" })
    }))

  it.effect("still checks the content type and the declared size first", () =>
    Effect.gen(function*() {
      const request = post("{}", "text/plain")
      rememberParsedUnsafe(request.source, {})
      expect((yield* Effect.flip(readJsonBody(request, 1024))).status).toBe(415)
    }))
})
