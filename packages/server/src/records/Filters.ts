/**
 * Filters on the fields of `data` (README: Filters): `data.<path>=<op>.<value>`
 * query parameters, parsed into values, written as SQL with parameters only,
 * and matched in memory with the same meaning for the in-memory store.
 *
 * A literal that is a JSON number compares numerically and exactly (jsonb
 * compares numbers as `numeric`; in memory, as decimals), a string as a
 * string; a field that is missing or of another type matches no comparison.
 */
import type { FieldError } from "@strata/domain"
import { Result } from "effect"
import { jsonText, parseExact } from "../platform/json/ExactJson.ts"

/** At most this many filters in one query. */
export const MAX_FILTERS = 20
/** At most this many values in one `in.(…)`. */
export const MAX_IN_VALUES = 100
/** Paths are at most this deep: the nesting `data` may have. */
export const MAX_PATH_DEPTH = 32

export type Literal =
  | { readonly type: "number"; readonly text: string }
  | { readonly type: "string"; readonly value: string }
  | { readonly type: "boolean"; readonly value: boolean }

export type Comparison = "eq" | "neq" | "gt" | "gte" | "lt" | "lte"

export type Condition =
  | { readonly op: Comparison; readonly value: Literal }
  | { readonly op: "in"; readonly values: ReadonlyArray<Literal> }
  | { readonly op: "is.null" }
  | { readonly op: "exists" }
  | { readonly op: "contains"; readonly value: unknown; readonly text: string }

export type Filter = Condition & {
  /** The query parameter as sent (`data.amount`): what a problem names. */
  readonly parameter: string
  readonly path: ReadonlyArray<string>
}

const COMPARISONS: ReadonlySet<string> = new Set(["eq", "neq", "gt", "gte", "lt", "lte"])
const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/
/** `numeric` holds far more, but a filter has no use for exponents past this. */
const MAX_EXPONENT = 1000

/**
 * A path after `data.`: names separated by dots; a name holding a dot, a quote
 * or nothing at all is written as a JSON string (`data."a.b".c`).
 */
export const parsePath = (text: string): ReadonlyArray<string> | string => {
  const names: Array<string> = []
  let at = 0
  while (at <= text.length) {
    if (text[at] === "\"") {
      let end = at + 1
      while (end < text.length && text[end] !== "\"") end += text[end] === "\\" ? 2 : 1
      if (end >= text.length) return "has an unterminated quoted name"
      try {
        names.push(JSON.parse(text.slice(at, end + 1)) as string)
      } catch {
        return "has a quoted name that is not a JSON string"
      }
      at = end + 1
      if (at < text.length && text[at] !== ".") return "must separate names with dots"
    } else {
      const dot = text.indexOf(".", at)
      const end = dot === -1 ? text.length : dot
      const name = text.slice(at, end)
      if (name === "") return "has an empty name (quote a name holding dots: data.\"a.b\")"
      names.push(name)
      at = end
    }
    if (names.length > MAX_PATH_DEPTH) return `is deeper than ${MAX_PATH_DEPTH} names`
    if (at >= text.length) break
    at += 1
    if (at === text.length) return "ends with a dot"
  }
  return names
}

const numberLiteral = (text: string): Literal | string => {
  const exponent = /[eE]([+-]?\d+)$/.exec(text)
  if (exponent !== null && Math.abs(Number(exponent[1])) > MAX_EXPONENT) return "has a number out of range"
  return { type: "number", text }
}

/** A value: a JSON number, a JSON string (quoted), true or false, or bare text as a string. */
export const parseLiteral = (text: string): Literal | string => {
  if (text === "") return "needs a value after the operator"
  if (JSON_NUMBER.test(text)) return numberLiteral(text)
  if (text.startsWith("\"")) {
    try {
      const value: unknown = JSON.parse(text)
      return typeof value === "string" ? { type: "string", value } : "is not a JSON string"
    } catch {
      return "is not a JSON string"
    }
  }
  if (text === "true" || text === "false") return { type: "boolean", value: text === "true" }
  if (text === "null") return "compares with null: use is.null"
  if (/^[-+.\d]/.test(text)) return "is not a JSON number (quote it to compare a string)"
  return { type: "string", value: text }
}

/** `(a,"b,c",3)`: the values of `in`, each a literal. */
const parseList = (text: string): ReadonlyArray<Literal> | string => {
  if (!text.startsWith("(") || !text.endsWith(")")) return "in needs a list: in.(a,b,…)"
  const body = text.slice(1, -1)
  const items: Array<string> = []
  let at = 0
  while (at <= body.length) {
    let end = at
    if (body[at] === "\"") {
      end += 1
      while (end < body.length && body[end] !== "\"") end += body[end] === "\\" ? 2 : 1
      end += 1
      if (end > body.length) return "has an unterminated quoted value"
      if (end < body.length && body[end] !== ",") return "must separate values with commas"
    } else {
      const comma = body.indexOf(",", at)
      end = comma === -1 ? body.length : comma
    }
    items.push(body.slice(at, end))
    if (items.length > MAX_IN_VALUES) return `in takes at most ${MAX_IN_VALUES} values`
    at = end + 1
  }
  const values: Array<Literal> = []
  for (const item of items) {
    const value = parseLiteral(item)
    if (typeof value === "string") return `has a value that ${value}`
    values.push(value)
  }
  return values
}

const parseCondition = (text: string): Condition | string => {
  if (text === "is.null") return { op: "is.null" }
  if (text === "exists") return { op: "exists" }
  const dot = text.indexOf(".")
  const op = dot === -1 ? text : text.slice(0, dot)
  const rest = dot === -1 ? "" : text.slice(dot + 1)
  if (COMPARISONS.has(op)) {
    const value = parseLiteral(rest)
    if (typeof value === "string") return value
    if (value.type === "boolean" && op !== "eq" && op !== "neq") return `${op} compares numbers or strings`
    return { op: op as Comparison, value }
  }
  if (op === "in") {
    const values = parseList(rest)
    return typeof values === "string" ? values : { op: "in", values }
  }
  if (op === "contains") {
    let parsed: ReturnType<typeof parseExact>
    try {
      parsed = parseExact(rest)
    } catch {
      return "contains needs a JSON value (URL-encoded)"
    }
    if (parsed._tag !== "Parsed") return "contains has a number that cannot be kept exactly"
    return { op: "contains", value: parsed.value, text: jsonText(parsed.value) }
  }
  return "has an unknown operator: use eq, neq, gt, gte, lt, lte, in, is.null, exists or contains"
}

/** The filters among a query's parameters (every `data.…` one), or a problem per bad parameter. */
export const parseFilters = (
  params: URLSearchParams
): Result.Result<ReadonlyArray<Filter>, ReadonlyArray<FieldError>> => {
  const filters: Array<Filter> = []
  const errors: Array<FieldError> = []
  for (const [name, value] of params) {
    if (!name.startsWith("data.")) continue
    if (filters.length + errors.length >= MAX_FILTERS) {
      errors.push({ path: name, message: `is one filter too many: at most ${MAX_FILTERS}` })
      break
    }
    const path = parsePath(name.slice("data.".length))
    if (typeof path === "string") {
      errors.push({ path: name, message: path })
      continue
    }
    const condition = parseCondition(value)
    if (typeof condition === "string") errors.push({ path: name, message: condition })
    else filters.push({ ...condition, parameter: name, path })
  }
  return errors.length > 0 ? Result.fail(errors) : Result.succeed(filters)
}

const literalJson = (l: Literal): string => l.type === "number" ? l.text : JSON.stringify(l.value)
const literalKey = (l: Literal) => [l.type, literalJson(l)]

/**
 * Whether an index of that kind on the filter's path serves it (README: Declared
 * indexes). A btree on (field, occurred_at, id) serves the filters that fix the
 * field, whose rows it holds in page order, so a page reads only what it answers;
 * a range or a list of values would have PostgreSQL collect and sort every
 * matching row of a partition, unbounded, so those stay within the scan budget.
 */
export const servedBy = (f: Filter, kind: "btree" | "gin"): boolean =>
  kind === "gin" ? f.op === "contains" : f.op === "eq" || f.op === "is.null"

/** One text per filter set, whatever the order of its parameters: what a cursor is bound to. */
export const filterSetKey = (filters: ReadonlyArray<Filter>): string | undefined =>
  filters.length === 0 ? undefined : JSON.stringify(
    filters.map((f) =>
      JSON.stringify([
        f.path,
        f.op,
        "value" in f && f.op !== "contains" ?
          literalKey(f.value) :
          f.op === "in" ?
          f.values.map(literalKey) :
          "text" in f
          ? f.text
          : null
      ])
    ).toSorted()
  )

/**
 * The filters as one SQL condition on `data`, every path and value a parameter
 * (`param` adds one and answers its placeholder).
 */
export const filterSql = (
  filters: ReadonlyArray<Filter>,
  param: (value: unknown) => string,
  fieldOf: (f: Filter) => string = (f) => `(data #> ${param(f.path)}::text[])`
): string =>
  filters.map((f) => {
    const field = fieldOf(f)
    switch (f.op) {
      case "eq":
        return `${field} = ${param(literalJson(f.value))}::jsonb`
      case "neq":
      case "gt":
      case "gte":
      case "lt":
      case "lte": {
        const sqlOp = { neq: "<>", gt: ">", gte: ">=", lt: "<", lte: "<=" }[f.op]
        return `(jsonb_typeof(${field}) = ${param(f.value.type)} AND ${field} ${sqlOp} ${
          param(literalJson(f.value))
        }::jsonb)`
      }
      case "in":
        return `${field} = ANY(${param(f.values.map(literalJson))}::jsonb[])`
      case "is.null":
        return `${field} = 'null'::jsonb`
      case "exists":
        return `${field} IS NOT NULL`
      case "contains":
        return `${field} @> ${param(f.text)}::jsonb`
    }
  }).join(" AND ")

// In memory: the same meaning on the parsed values (ExactJson keeps long numbers as raw JSON).
const RawJson = JSON as unknown as { isRawJSON: (value: unknown) => boolean }

type Kind = "null" | "boolean" | "number" | "string" | "array" | "object"
const kindOf = (v: unknown): Kind =>
  v === null
    ? "null"
    : typeof v === "number" || RawJson.isRawJSON(v)
    ? "number"
    : typeof v === "string"
    ? "string"
    : typeof v === "boolean"
    ? "boolean"
    : Array.isArray(v)
    ? "array"
    : "object"

const numberText = (v: unknown) => typeof v === "number" ? String(v) : JSON.stringify(v)

/** A decimal as sign, digits with no leading or trailing zeros, and the power of ten of its first digit. */
const decimal = (text: string) => {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text)!
  const raw = m[2] + (m[3] ?? "")
  const lead = raw.length - raw.replace(/^0+/, "").length
  const digits = raw.slice(lead).replace(/0+$/, "")
  return { negative: m[1] === "-", digits, magnitude: m[2].length - lead + Number(m[4] ?? 0) }
}

/** Compares two JSON numbers exactly: -1, 0 or 1. */
export const compareNumbers = (a: string, b: string): number => {
  const x = decimal(a)
  const y = decimal(b)
  const sx = x.digits === "" ? 0 : x.negative ? -1 : 1
  const sy = y.digits === "" ? 0 : y.negative ? -1 : 1
  if (sx !== sy || sx === 0) return Math.sign(sx - sy)
  let c = Math.sign(x.magnitude - y.magnitude)
  if (c === 0) {
    const width = Math.max(x.digits.length, y.digits.length)
    const dx = x.digits.padEnd(width, "0")
    const dy = y.digits.padEnd(width, "0")
    c = dx < dy ? -1 : dx > dy ? 1 : 0
  }
  return sx * c
}

const valueAt = (data: unknown, path: ReadonlyArray<string>): unknown => {
  let at: unknown = data
  for (const name of path) {
    if (Array.isArray(at) && /^-?\d+$/.test(name)) {
      const i = Number(name)
      at = at[i < 0 ? at.length + i : i]
    } else if (at !== null && typeof at === "object" && !RawJson.isRawJSON(at) && Object.hasOwn(at, name)) {
      at = (at as Record<string, unknown>)[name]
    } else return undefined
  }
  return at
}

/** -1, 0, 1, or undefined when the value is not of the literal's type. */
const compareLiteral = (v: unknown, l: Literal): number | undefined => {
  if (kindOf(v) !== l.type) return undefined
  if (l.type === "number") return compareNumbers(numberText(v), l.text)
  if (l.type === "boolean") return v === l.value ? 0 : (v as boolean) < l.value ? -1 : 1
  // By code point, as PostgreSQL orders them under the C.UTF-8 collation (UTF-16 units differ past U+FFFF).
  return Math.sign(Buffer.compare(Buffer.from(v as string), Buffer.from(l.value)))
}

/** jsonb's `@>`: objects hold the pairs, arrays the elements (an array holds a scalar too), scalars equal. */
export const contains = (a: unknown, b: unknown, top = true): boolean => {
  const ka = kindOf(a)
  const kb = kindOf(b)
  if (ka === "array" && kb !== "array" && kb !== "object" && top) {
    return (a as Array<unknown>).some((e) => contains(e, b, false))
  }
  if (ka !== kb) return false
  switch (ka) {
    case "object":
      return Object.entries(b as object).every(([k, v]) =>
        Object.hasOwn(a as object, k) && contains((a as Record<string, unknown>)[k], v, false)
      )
    case "array":
      return (b as Array<unknown>).every((e) => (a as Array<unknown>).some((x) => contains(x, e, false)))
    case "number":
      return compareNumbers(numberText(a), numberText(b)) === 0
    default:
      return a === b
  }
}

/** True when `data` passes every filter. */
export const matchesAll = (filters: ReadonlyArray<Filter>, data: unknown): boolean =>
  filters.every((f) => {
    const v = valueAt(data, f.path)
    if (v === undefined) return false
    switch (f.op) {
      case "eq":
        return compareLiteral(v, f.value) === 0
      case "neq": {
        const c = compareLiteral(v, f.value)
        return c !== undefined && c !== 0
      }
      case "gt":
        return (compareLiteral(v, f.value) ?? 0) > 0
      case "gte": {
        const c = compareLiteral(v, f.value)
        return c !== undefined && c >= 0
      }
      case "lt":
        return (compareLiteral(v, f.value) ?? 0) < 0
      case "lte": {
        const c = compareLiteral(v, f.value)
        return c !== undefined && c <= 0
      }
      case "in":
        return f.values.some((l) => compareLiteral(v, l) === 0)
      case "is.null":
        return v === null
      case "exists":
        return true
      case "contains":
        return contains(v, f.value)
    }
  })

/**
 * Whether a stream's JSON Schema forbids the path: some object on the way
 * names its properties and says `additionalProperties: false` without this
 * name. Where the schema says less (patterns, references, combinators), the
 * path is allowed.
 */
export const schemaForbids = (schema: unknown, path: ReadonlyArray<string>): boolean => {
  let at: unknown = schema
  for (const name of path) {
    if (at === null || typeof at !== "object") return false
    const node = at as {
      readonly properties?: Readonly<Record<string, unknown>>
      readonly patternProperties?: unknown
      readonly additionalProperties?: unknown
    }
    if (node.properties !== undefined && Object.hasOwn(node.properties, name)) at = node.properties[name]
    else if (node.patternProperties !== undefined) return false
    else if (node.additionalProperties === false) return true
    else at = node.additionalProperties
  }
  return false
}
