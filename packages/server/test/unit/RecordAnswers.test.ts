/**
 * A record's answer (records/RecordAnswers.ts) and the answer's two ways out
 * (platform/http/Answer.ts): what both request paths send for a GET and a 201.
 */
import { describe, expect, it } from "@effect/vitest"
import { created, toResponse } from "../../src/platform/http/Answer.ts"
import { matchesEtag, RECORD_CACHE_CONTROL, recordAnswer } from "../../src/records/RecordAnswers.ts"

const ID = "019ae3b2-0000-7000-8000-000000000001"
const TEXT = `{"id":"${ID}"}`

describe("recordAnswer", () => {
  it("is a 200 with the text, a strong ETag of the id, kept forever, and where it came from", () => {
    expect(recordAnswer(ID, TEXT, "hit", undefined)).toEqual({
      status: 200,
      headers: { etag: `"${ID}"`, "cache-control": RECORD_CACHE_CONTROL, "cache-status": "strata; hit" },
      body: TEXT
    })
    expect(recordAnswer(ID, TEXT, "miss", undefined).headers["cache-status"]).toBe("strata; fwd=miss")
    expect(recordAnswer(ID, TEXT, "unavailable", undefined).headers["cache-status"]).toBe("strata; fwd=miss")
  })

  it("is a 304 with no body when If-None-Match names the record (weakly, in a list, or *)", () => {
    for (const header of [`"${ID}"`, `W/"${ID}"`, `"other", "${ID}"`, "*"]) {
      const answer = recordAnswer(ID, TEXT, "hit", header)
      expect(answer.status).toBe(304)
      expect(answer.body).toBeUndefined()
      expect(answer.headers.etag).toBe(`"${ID}"`)
    }
    expect(recordAnswer(ID, TEXT, "hit", `"other"`).status).toBe(200)
  })

  it("matches entity tags as RFC 9110 says", () => {
    expect(matchesEtag(` W/"a" `, `"a"`)).toBe(true)
    expect(matchesEtag(`"ab"`, `"a"`)).toBe(false)
  })
})

describe("Answer", () => {
  it("makes a 201 with its Location, sent as JSON by the app", async () => {
    const response = toResponse(created(`/data/${ID}`, TEXT, "p"))
    expect(response.status).toBe(201)
    expect(response.headers.location).toBe(`/data/${ID}`)
    expect(response.body).toMatchObject({ _tag: "Uint8Array", contentType: "application/json" })
  })

  it("sends a 304 empty", () => {
    const response = toResponse(recordAnswer(ID, TEXT, "hit", "*"))
    expect(response.status).toBe(304)
    expect(response.body._tag).toBe("Empty")
  })
})
