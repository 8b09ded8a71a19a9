/**
 * Tenant schemas are untrusted code (README: Schemas). Before a schema is compiled it
 * must be small (MAX_SCHEMA_BYTES), shallow (32 levels), reference only itself
 * (no remote `$ref`), use no `$data`, and hold only patterns that RE2 (linear
 * time, no backtracking) can run; ajv then compiles it in strict mode, so an
 * unknown keyword is an error rather than silently ignored. Patterns also run
 * on re2js when records are validated, never on the backtracking RegExp.
 *
 * Each schema gets its own ajv instance: a tenant's `$id` cannot collide with,
 * or be referenced by, another tenant's schema.
 */
import type { FieldError } from "@strata/domain"
import addFormatsModule from "ajv-formats"
import { _, Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js"
import standaloneModule from "ajv/dist/standalone/index.js"
import { Result } from "effect"
import { createRequire } from "node:module"
import { RE2JS } from "re2js"
import { jsonText } from "../platform/json/ExactJson.ts"

export const MAX_SCHEMA_DEPTH = 32

const addFormats = (addFormatsModule as unknown as { default: (ajv: Ajv2020) => void }).default
const standaloneCode =
  (standaloneModule as unknown as { default: (ajv: Ajv2020, validate: ValidateFunction) => string })
    .default

/**
 * ajv's regular-expression engine: re2js, whose matching time is linear in
 * the input. Each pattern is compiled on first use, so loading a compiled
 * schema costs no pattern compilation up front. `code` is how the generated
 * (standalone) validator refers to it: see `loadValidator`.
 */
export const re2Engine = Object.assign((pattern: string) => {
  let re: RE2JS | undefined
  return { test: (s: string) => (re ??= RE2JS.compile(pattern)).test(s), toString: () => pattern }
}, { code: `require("strata:re2")` })

const RawJson = JSON as unknown as { isRawJSON: (value: unknown) => boolean }

/**
 * `value` with the raw JSON numbers kept by exact parsing (see RecordJson)
 * turned into plain numbers, so a schema sees a number where the client sent
 * one. The same value comes back when it holds none (the usual case: no copy).
 */
export const validatable = (value: unknown): unknown => {
  if (value === null || typeof value !== "object") return value
  if (RawJson.isRawJSON(value)) return Number((value as { rawJSON: string }).rawJSON)
  if (Array.isArray(value)) {
    let copy: Array<unknown> | undefined
    for (let i = 0; i < value.length; i++) {
      const item = validatable(value[i])
      if (item !== value[i]) copy ??= value.slice()
      if (copy !== undefined) copy[i] = item
    }
    return copy ?? value
  }
  let copy: Record<string, unknown> | undefined
  for (const key in value) {
    const old = (value as Record<string, unknown>)[key]
    const item = validatable(old)
    if (item !== old) {
      copy ??= { ...(value as Record<string, unknown>) }
      copy[key] = item
    }
  }
  return copy ?? value
}

/** Depth of nested objects and arrays, without recursion (the schema is not checked yet). */
const depthOf = (root: unknown): number => {
  let max = 0
  const stack: Array<[unknown, number]> = [[root, 1]]
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!
    if (node === null || typeof node !== "object") continue
    if (depth > max) max = depth
    if (depth > MAX_SCHEMA_DEPTH) return depth
    for (const child of Array.isArray(node) ? node : Object.values(node)) stack.push([child, depth + 1])
  }
  return max
}

/** Keywords whose value is data, not a schema: nothing in them is a keyword. */
const DATA_KEYWORDS = new Set(["enum", "const", "default", "examples"])
/** Keywords whose value maps names (not keywords) to schemas. */
const NAMED_SCHEMAS = new Set(["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"])

const re2Problem = (pattern: string): string | undefined => {
  try {
    RE2JS.compile(pattern)
    return undefined
  } catch (error) {
    return `is not a pattern a linear-time engine (RE2) can run: ${(error as Error).message}`
  }
}

/** The reasons, found by walking the keywords, that the schema cannot be accepted. */
const keywordProblems = (schema: unknown): Array<FieldError> => {
  const problems: Array<FieldError> = []
  const walk = (node: unknown, path: string) => {
    if (problems.length >= 20 || node === null || typeof node !== "object") return
    if (Array.isArray(node)) return node.forEach((item, i) => walk(item, `${path}[${i}]`))
    for (const [key, value] of Object.entries(node)) {
      const at = `${path}.${key}`
      if (DATA_KEYWORDS.has(key)) continue
      if (key === "$data") {
        problems.push({ path: at, message: "$data references are not allowed" })
      } else if ((key === "$ref" || key === "$dynamicRef") && typeof value === "string" && !value.startsWith("#")) {
        problems.push({ path: at, message: `must be a reference inside the schema (#…), not ${JSON.stringify(value)}` })
      } else if (key === "pattern" && typeof value === "string") {
        const problem = re2Problem(value)
        if (problem !== undefined) problems.push({ path: at, message: problem })
      } else if (NAMED_SCHEMAS.has(key) && value !== null && typeof value === "object" && !Array.isArray(value)) {
        for (const [name, sub] of Object.entries(value)) {
          if (key === "patternProperties") {
            const problem = re2Problem(name)
            if (problem !== undefined) problems.push({ path: `${at}[${JSON.stringify(name)}]`, message: problem })
          }
          walk(sub, `${at}[${JSON.stringify(name)}]`)
        }
        continue
      }
      walk(value, at)
    }
  }
  walk(schema, "schema")
  return problems
}

const makeAjv = (source: boolean) => {
  const ajv = new Ajv2020({
    strictSchema: true,
    strictNumbers: true,
    // Not required: `properties` without `type: "object"` is common and harmless.
    strictTypes: false,
    strictTuples: false,
    strictRequired: false,
    // The first error per record: `allErrors` costs time on every write.
    allErrors: false,
    $data: false,
    logger: false,
    code: source
      ? { regExp: re2Engine, source: true, formats: _`require("ajv-formats/dist/formats").fullFormats` }
      : { regExp: re2Engine }
  })
  addFormats(ajv)
  return ajv
}

/** The reasons an untrusted schema cannot be accepted, before ajv sees it (none: go ahead). */
const precheck = (schema: unknown, maxBytes: number): ReadonlyArray<FieldError> => {
  const bytes = Buffer.byteLength(jsonText(schema))
  if (bytes > maxBytes) {
    return [{
      path: "schema",
      message: `is ${bytes} bytes serialised; at most ${maxBytes} are allowed (MAX_SCHEMA_BYTES)`
    }]
  }
  if (depthOf(schema) > MAX_SCHEMA_DEPTH) {
    return [{ path: "schema", message: `must not nest deeper than ${MAX_SCHEMA_DEPTH} levels` }]
  }
  return keywordProblems(schema)
}

/**
 * Checks an untrusted schema and compiles it, here and now, or answers every
 * reason it cannot be accepted (paths under `schema`).
 */
export const compileSchema = (
  schema: unknown,
  maxBytes: number
): Result.Result<ValidateFunction, ReadonlyArray<FieldError>> => {
  const problems = precheck(schema, maxBytes)
  if (problems.length > 0) return Result.fail(problems)
  try {
    return Result.succeed(makeAjv(false).compile(validatable(schema) as object))
  } catch (error) {
    return Result.fail([{ path: "schema", message: (error as Error).message }])
  }
}

/**
 * The same checks, answering the validator's JavaScript source instead (ajv's
 * standalone code), for `loadValidator`: what a compile worker runs, so that
 * ajv's code generation (hundreds of milliseconds for a large schema) happens
 * off the event loop that serves requests.
 */
export const compileSchemaSource = (
  schema: unknown,
  maxBytes: number
): Result.Result<string, ReadonlyArray<FieldError>> => {
  const problems = precheck(schema, maxBytes)
  if (problems.length > 0) return Result.fail(problems)
  try {
    const ajv = makeAjv(true)
    return Result.succeed(standaloneCode(ajv, ajv.compile(validatable(schema) as object)))
  } catch (error) {
    return Result.fail([{ path: "schema", message: (error as Error).message }])
  }
}

const requireHere = createRequire(import.meta.url)
/** What the generated code may load: ajv's and ajv-formats' runtime pieces, and the RE2 engine. */
const requireForValidator = (id: string): unknown => {
  if (id === "strata:re2") return re2Engine
  if (!id.startsWith("ajv/dist/runtime/") && id !== "ajv-formats/dist/formats") {
    throw new Error(`a generated validator may not load ${id}`)
  }
  return requireHere(id)
}

/** A validator from `compileSchemaSource`: evaluating code is far cheaper than generating it. */
export const loadValidator = (source: string): ValidateFunction => {
  const module = { exports: {} as unknown }
  new Function("require", "module", "exports", source)(requireForValidator, module, module.exports)
  return module.exports as ValidateFunction
}

/** A JSON pointer into `data` written as clients write paths: `data.items[0].price`. */
const pathOf = (data: unknown, pointer: string, prefix: string, extra: string | undefined): string => {
  const segments = pointer === ""
    ? []
    : pointer.slice(1).split("/").map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
  if (extra !== undefined) segments.push(extra)
  let node = data
  let out = prefix
  for (const segment of segments) {
    if (Array.isArray(node)) {
      out += `[${segment}]`
      node = node[Number(segment)]
    } else {
      out += `.${segment}`
      node = node !== null && typeof node === "object" ? (node as Record<string, unknown>)[segment] : undefined
    }
  }
  return out
}

/** The property an error is about when ajv names it in params rather than in the path. */
const propertyOf = (error: ErrorObject): string | undefined => {
  const p = error.params as Record<string, unknown>
  const name = p.missingProperty ?? p.additionalProperty ?? p.unevaluatedProperty ?? p.propertyName
  return typeof name === "string" ? name : undefined
}

const messageOf = (error: ErrorObject): string => {
  switch (error.keyword) {
    case "required":
    case "dependentRequired":
      return "is required by the stream's schema"
    case "additionalProperties":
    case "unevaluatedProperties":
      return "is not allowed by the stream's schema"
    default:
      return error.message ?? "does not match the stream's schema"
  }
}

/**
 * Validates `data` and answers its violations (none: valid), each naming its
 * place under `prefix` (`data`, `records[3].data`), the keyword and the version.
 */
export const violations = (
  validate: ValidateFunction,
  version: number,
  data: unknown,
  prefix: string
): ReadonlyArray<FieldError> => {
  const value = validatable(data)
  if (validate(value)) return []
  return (validate.errors ?? []).map((error) => ({
    path: pathOf(value, error.instancePath, prefix, propertyOf(error)),
    message: messageOf(error),
    keyword: error.keyword,
    schemaVersion: version
  }))
}
