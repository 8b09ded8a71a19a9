/**
 * Schema decoding that reports every invalid field at once (README: The API), with paths
 * written as clients write them: `records[3].occurredAt`.
 */
import { type FieldError, ValidationFailed } from "@strata/domain"
import { Effect, Schema, SchemaIssue } from "effect"

const format = SchemaIssue.makeFormatterStandardSchemaV1()

export const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>(
    (out, segment) =>
      typeof segment === "number"
        ? `${out}[${segment}]`
        : out === ""
        ? String(segment)
        : `${out}.${String(segment)}`,
    ""
  )

const friendly = (message: string): string => {
  if (message === "Missing key") return "is required"
  if (/^Expected [A-Z]\w*$/.test(message) || message === "Expected object") return "must be a JSON object"
  if (message.startsWith("Unexpected key") || message === "Expected no excess property") return "is not a known field"
  return message
}

/** One entry per invalid field: the first reason found for it. */
export const toFieldErrors = (issue: SchemaIssue.Issue, prefix: ReadonlyArray<PropertyKey> = []): Array<FieldError> => {
  const byPath = new Map<string, string>()
  for (const i of format(issue).issues) {
    const path = formatPath([...prefix, ...(i.path ?? []).map((s) => typeof s === "object" ? s.key : s)]) || "(body)"
    if (!byPath.has(path)) byPath.set(path, friendly(i.message))
  }
  return Array.from(byPath, ([path, message]) => ({ path, message }))
}

export const validationFailed = (errors: ReadonlyArray<FieldError>): ValidationFailed =>
  new ValidationFailed({
    detail: errors.length === 1 ? "1 field is invalid" : `${errors.length} fields are invalid`,
    errors
  })

/** Decodes `input`, failing with one validation problem that lists every invalid field. */
export const decodeAll = <S extends Schema.Decoder<unknown>>(schema: S, prefix: ReadonlyArray<PropertyKey> = []) => {
  const decode = Schema.decodeUnknownEffect(schema)
  return (input: unknown): Effect.Effect<S["Type"], ValidationFailed, S["DecodingServices"]> =>
    decode(input, { errors: "all", onExcessProperty: "error" }).pipe(
      Effect.mapError((error) => validationFailed(toFieldErrors(error.issue, prefix)))
    )
}
