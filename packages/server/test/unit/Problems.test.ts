/**
 * Problem documents (platform/http/Problems.ts): rendered once with the request
 * id in the body, the one 503 of a database that is down, and which problem a
 * failed request answers.
 */
import { describe, expect, it } from "@effect/vitest"
import { NotFound, RateLimited, ValidationFailed } from "@strata/domain"
import { Cause, Effect } from "effect"
import type { HttpServerResponse } from "effect/http"
import {
  databaseProblem,
  problemOfFailure,
  problemResponse,
  renderProblem,
  unavailableOnTransient,
  withRequestIdIn
} from "../../src/platform/http/Problems.ts"
import { RequestId } from "../../src/platform/http/RequestId.ts"
import { ConnectionLost, DbError, StatementFailed, Timeout } from "../../src/platform/sql/DbError.ts"

const bodyOf = (response: HttpServerResponse.HttpServerResponse) => {
  if (response.body._tag !== "Uint8Array") throw new Error(`a ${response.body._tag} body`)
  return JSON.parse(new TextDecoder().decode(response.body.body))
}

const dbError = (reason: DbError["reason"]) => new DbError({ reason, message: "it failed" })

describe("withRequestIdIn", () => {
  it("gives a copy of the same problem class the request id, its fields kept", () => {
    const problem = new ValidationFailed({ detail: "1 field is invalid", errors: [{ path: "stream", message: "x" }] })
    const stamped = withRequestIdIn(problem, "req-1")
    expect(stamped).toBeInstanceOf(ValidationFailed)
    expect(stamped).toMatchObject({ requestId: "req-1", detail: "1 field is invalid", status: 400 })
    expect(stamped.errors).toEqual([{ path: "stream", message: "x" }])
    expect(problem.requestId).toBeUndefined()
  })
})

describe("renderProblem", () => {
  it("writes the request id into the body and the header, once, with the headers given", () => {
    const response = renderProblem(new NotFound({ detail: "No record x" }), "req-2", { "ratelimit-policy": "p" })
    expect(response.status).toBe(404)
    expect(response.headers).toMatchObject({
      "x-request-id": "req-2",
      "ratelimit-policy": "p",
      "content-type": "application/problem+json"
    })
    expect(bodyOf(response)).toEqual({
      type: "/problems/not-found",
      title: "Not found",
      status: 404,
      detail: "No record x",
      requestId: "req-2"
    })
  })

  it("adds Retry-After to a 429 or 503 that carries none", () => {
    const limited = renderProblem(new RateLimited({ detail: "slow down" }), "r", {})
    expect(limited.headers["retry-after"]).toBe("1")
    const kept = renderProblem(new RateLimited({ detail: "slow down" }), "r", { "retry-after": "7" })
    expect(kept.headers["retry-after"]).toBe("7")
  })
})

describe("problemResponse", () => {
  it.effect("renders under the fiber's request id", () =>
    Effect.gen(function*() {
      const response = yield* problemResponse(new NotFound({ detail: "none" })).pipe(
        Effect.provideService(RequestId, "req-3")
      )
      expect(bodyOf(response).requestId).toBe("req-3")
      expect(response.headers["x-request-id"]).toBe("req-3")
    }))
})

describe("the 503 of the database", () => {
  it("is a 503 for every transient reason and nothing for a failed statement", () => {
    for (const reason of [new Timeout(), new ConnectionLost()]) {
      expect(databaseProblem(dbError(reason))?.status).toBe(503)
    }
    expect(databaseProblem(dbError(new StatementFailed()))).toBeUndefined()
  })

  it.effect("fails handlers with the 503, and makes a failed statement a defect", () =>
    Effect.gen(function*() {
      const unavailable = yield* Effect.flip(unavailableOnTransient(dbError(new Timeout()), "Keys are away"))
      expect(unavailable).toMatchObject({ status: 503, detail: "Keys are away" })
      const exit = yield* Effect.exit(unavailableOnTransient(dbError(new StatementFailed())))
      expect(exit._tag === "Failure" && Cause.hasDies(exit.cause)).toBe(true)
    }))
})

describe("problemOfFailure", () => {
  it("answers a transient database failure 503, a problem as itself, anything else 500", () => {
    expect(problemOfFailure(Cause.fail(dbError(new ConnectionLost()))).problem.status).toBe(503)
    expect(problemOfFailure(Cause.fail(dbError(new StatementFailed()))).problem.status).toBe(500)
    const notFound = new NotFound({ detail: "gone" })
    expect(problemOfFailure(Cause.fail(notFound)).problem).toBe(notFound)
    expect(problemOfFailure(Cause.die(new Error("bug"))).problem.status).toBe(500)
  })
})
