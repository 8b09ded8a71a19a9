/**
 * The filters of a request (README: Filters): its `data.…` query parameters,
 * which the HttpApi query schema does not hold (their names are the paths).
 */
import type { ValidationFailed } from "@strata/domain"
import { Effect, Result } from "effect"
import { validationFailed } from "../platform/http/Validation.ts"
import { type Filter, parseFilters } from "./Filters.ts"

/** The filters in a request URL (path and query), or a validation problem naming each bad parameter. */
export const queryFilters = (url: string): Effect.Effect<ReadonlyArray<Filter>, ValidationFailed> => {
  const query = url.indexOf("?")
  if (query === -1 || !url.includes("data.", query)) return Effect.succeed([])
  const parsed = parseFilters(new URLSearchParams(url.slice(query + 1)))
  return Result.isSuccess(parsed) ? Effect.succeed(parsed.success) : Effect.fail(validationFailed(parsed.failure))
}
