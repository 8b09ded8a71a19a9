/**
 * The one assertion for a problem answer (README: The API): its status, the problem
 * content type, its stable `type`, and the request id of the response in its body.
 */
import { expect } from "@effect/vitest"

export interface FieldError {
  readonly path: string
  readonly message: string
  readonly keyword?: string
  readonly schemaVersion?: number
  readonly recordId?: string
}

export const expectProblem = async (res: Response, status: number, type: string) => {
  expect(res.status).toBe(status)
  expect(res.headers.get("content-type")).toContain("application/problem+json")
  const body = await res.json() as {
    type: string
    status: number
    requestId: string
    errors?: Array<FieldError>
  }
  expect(body.type).toBe(`/problems/${type}`)
  expect(body.status).toBe(status)
  expect(body.requestId).toBe(res.headers.get("x-request-id"))
  return body
}
