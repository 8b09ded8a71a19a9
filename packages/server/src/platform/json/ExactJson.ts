/**
 * JSON that keeps every number exactly (README: The API) with one byte form per value.
 *
 * `JSON.parse` turns `9007199254740993` into `9007199254740992` and
 * `19.999999999999999999` into `20`. `parseExact` keeps such a number as
 * `JSON.rawJSON` of its decimal text (written the way PostgreSQL's `numeric`
 * writes it), so `JSON.stringify` and `jsonText` give it back digit for digit.
 * Numbers a double holds exactly stay plain numbers. Only bodies that could hold
 * such a number (a run of 16 digits, or an exponent) pay for the reviver.
 *
 * `jsonText` writes object keys in the order PostgreSQL's `jsonb` keeps them
 * (shorter first, then by UTF-8 bytes), so a value has one byte form whether
 * it comes from the request, the cache, the database or the outbox.
 */
/** Node 24's raw JSON (TC39 JSON.parse source text access), not yet in TypeScript's lib. */
const RawJson = JSON as unknown as {
  rawJSON: (text: string) => object
  isRawJSON: (value: unknown) => boolean
}

/** A number that could lose digits in a double: 16+ digits in a row (a dot may sit among them), or an exponent. */
const MAYBE_INEXACT = /\d[\d.]{15}|\d[eE]/

/** `numeric` holds up to 131,072 digits before the point and 16,383 after; far less is plenty. */
export const MAX_DECIMAL_EXPONENT = 10_000

const NUMBER = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/

/** The decimal of a JSON number as digits × 10^exponent, or undefined past the bound. */
const decimalOf = (text: string) => {
  const m = NUMBER.exec(text)
  if (m === null) return undefined
  const fraction = m[3] ?? ""
  const exponent = Number(m[4] ?? 0) - fraction.length
  if (!Number.isSafeInteger(exponent) || Math.abs(exponent) > MAX_DECIMAL_EXPONENT) return undefined
  return { negative: m[1] === "-", digits: m[2] + fraction, exponent }
}

/** The value of a decimal with leading and trailing zeros dropped: equal values, equal strings. */
const normalised = (d: { negative: boolean; digits: string; exponent: number }): string => {
  let digits = d.digits.replace(/^0+/, "")
  let exponent = d.exponent
  if (digits === "") return "0"
  const trimmed = digits.replace(/0+$/, "")
  exponent += digits.length - trimmed.length
  digits = trimmed
  return `${d.negative ? "-" : ""}${digits}e${exponent}`
}

/** Plain decimal notation with the input's scale, as PostgreSQL's numeric prints it (`1.50e1` → `15.0`). */
const plainDecimal = (d: { negative: boolean; digits: string; exponent: number }): string => {
  let text: string
  if (d.exponent >= 0) {
    text = (d.digits + "0".repeat(d.exponent)).replace(/^0+(?=\d)/, "")
  } else {
    const padded = d.digits.padStart(-d.exponent + 1, "0")
    const point = padded.length + d.exponent
    text = `${padded.slice(0, point).replace(/^0+(?=\d)/, "")}.${padded.slice(point)}`
  }
  return d.negative && /[1-9]/.test(text) ? `-${text}` : text
}

/** Marks a number that cannot be kept; found again by `pathOf` to name its path. */
const REJECTED: unique symbol = Symbol("strata/RejectedNumber")

/** Keeps inexact numbers as raw JSON; marks those past the bound with REJECTED. */
const makeReviver = (found: { rejected: boolean }) => (_key: string, value: unknown, context?: { source?: string }) => {
  if (typeof value !== "number" || context?.source === undefined) return value
  const source = context.source
  const decimal = decimalOf(source)
  if (decimal === undefined) {
    found.rejected = true
    return REJECTED
  }
  if (Number.isFinite(value)) {
    const shortest = decimalOf(String(value).replace("e+", "e"))
    if (shortest !== undefined && normalised(shortest) === normalised(decimal)) return value
  }
  return RawJson.rawJSON(plainDecimal(decimal))
}

export type Parsed =
  | { readonly _tag: "Parsed"; readonly value: unknown }
  | { readonly _tag: "Inexact"; readonly path: ReadonlyArray<string | number> }

/** `JSON.parse`, keeping every number exactly; throws SyntaxError like it. */
export const parseExact = (text: string): Parsed => {
  if (!MAYBE_INEXACT.test(text)) return { _tag: "Parsed", value: JSON.parse(text) }
  const found = { rejected: false }
  let value: unknown
  try {
    value = JSON.parse(text, makeReviver(found) as Parameters<typeof JSON.parse>[1])
  } catch (error) {
    // The reviver recurses: a body nested thousands deep overflows the stack.
    // Such a body fails validation (data nests 32 deep at most), so plain parsing is enough.
    if (error instanceof RangeError) return { _tag: "Parsed", value: JSON.parse(text) }
    throw error
  }
  return found.rejected ? { _tag: "Inexact", path: pathOf(value, REJECTED) } : { _tag: "Parsed", value }
}

interface Step {
  readonly node: unknown
  readonly key: string | number | undefined
  readonly parent: Step | undefined
}

/** The path to the first `target` in `root` (depth-first, without recursion). */
const pathOf = (root: unknown, target: unknown): Array<string | number> => {
  const stack: Array<Step> = [{ node: root, key: undefined, parent: undefined }]
  while (stack.length > 0) {
    const step = stack.pop()!
    if (step.node === target) {
      const path: Array<string | number> = []
      for (let s: Step | undefined = step; s?.key !== undefined; s = s.parent) path.unshift(s.key)
      return path
    }
    if (Array.isArray(step.node)) step.node.forEach((node, key) => stack.push({ node, key, parent: step }))
    else if (step.node !== null && typeof step.node === "object" && !RawJson.isRawJSON(step.node)) {
      for (const [key, node] of Object.entries(step.node)) stack.push({ node, key, parent: step })
    }
  }
  return []
}

const isAscii = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false
  return true
}

/** jsonb's key order: byte length, then bytes. */
const compareKeys = (a: string, b: string): number => {
  if (isAscii(a) && isAscii(b)) return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0)
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length - y.length || Buffer.compare(x, y)
}

const needsSort = (keys: ReadonlyArray<string>): boolean => {
  for (let i = 1; i < keys.length; i++) if (compareKeys(keys[i - 1], keys[i]) > 0) return true
  return false
}

/** Text built piece by piece: for values whose keys V8 cannot hold in jsonb's order. */
const textInOrder = (value: unknown): string => {
  if (value === null || typeof value !== "object") return JSON.stringify(value)
  if (RawJson.isRawJSON(value)) return (value as { rawJSON: string }).rawJSON
  if (Array.isArray(value)) {
    let out = "["
    for (let i = 0; i < value.length; i++) out += (i === 0 ? "" : ",") + textInOrder(value[i])
    return out + "]"
  }
  const keys = Object.keys(value)
  if (needsSort(keys)) keys.sort(compareKeys)
  let out = "{"
  for (let i = 0; i < keys.length; i++) {
    out += (i === 0 ? "" : ",") + JSON.stringify(keys[i]) + ":" +
      textInOrder((value as Record<string, unknown>)[keys[i]])
  }
  return out + "}"
}

/** An array index, which V8 lists before every other key whatever the insertion order. */
const isIndexKey = (key: string): boolean => /^(?:0|[1-9]\d{0,9})$/.test(key) && Number(key) < 4_294_967_295

/** Marks a value `inOrder` cannot rebuild. */
const UNORDERABLE: unique symbol = Symbol("strata/Unorderable")

/**
 * `value` with every object's keys in jsonb's order (objects already in order
 * are kept, others copied), or UNORDERABLE when an object must be reordered
 * and has an array-index key, which no object can hold after a longer key.
 */
const inOrder = (value: unknown): unknown => {
  if (value === null || typeof value !== "object" || RawJson.isRawJSON(value)) return value
  if (Array.isArray(value)) {
    let copy: Array<unknown> | undefined
    for (let i = 0; i < value.length; i++) {
      const item = inOrder(value[i])
      if (item === UNORDERABLE) return UNORDERABLE
      if (item !== value[i]) (copy ??= value.slice())[i] = item
    }
    return copy ?? value
  }
  const object = value as Record<string, unknown>
  const keys = Object.keys(object)
  let changed = needsSort(keys)
  if (changed) {
    for (const key of keys) if (isIndexKey(key)) return UNORDERABLE
    keys.sort(compareKeys)
  }
  const items: Array<unknown> = []
  for (const key of keys) {
    const item = inOrder(object[key])
    if (item === UNORDERABLE) return UNORDERABLE
    if (item !== object[key]) changed = true
    items.push(item)
  }
  if (!changed) return value
  const copy: Record<string, unknown> = {}
  for (let i = 0; i < keys.length; i++) {
    // A `__proto__` key from JSON.parse is an own property; assigned, it would set the prototype.
    if (keys[i] === "__proto__") {
      Object.defineProperty(copy, "__proto__", {
        value: items[i],
        enumerable: true,
        writable: true,
        configurable: true
      })
    } else copy[keys[i]] = items[i]
  }
  return copy
}

/**
 * JSON text of a value with keys in jsonb's order; raw JSON numbers as they are.
 * Reordered objects go through `JSON.stringify` in one native call, which is
 * faster than building the text piece by piece.
 */
export const jsonText = (value: unknown): string => {
  const ordered = inOrder(value)
  return ordered === UNORDERABLE ? textInOrder(value) : JSON.stringify(ordered)
}

/**
 * The number text[begin, end) as PostgreSQL's jsonb prints it, written as
 * `jsonText` writes it: the same but for a fraction's trailing zeros (`20.50` is
 * written `20.5`, `3.00` `3`); undefined when JavaScript might write it otherwise
 * (16 or more digits, a fraction under 1e-6, an exponent): parse it then.
 */
const asJsonText = (text: string, begin: number, end: number): string | undefined => {
  let digits = 0
  let point = -1
  for (let i = begin; i < end; i++) {
    const c = text.charCodeAt(i)
    if (c >= 48 && c <= 57) digits++
    else if (c === 46) point = i
    else if (c !== 45 || i !== begin) return undefined
  }
  if (digits > 15) return undefined
  const first = text.charCodeAt(begin) === 45 ? begin + 1 : begin
  if (point === -1) return end - first === 1 && first > begin && text.charCodeAt(first) === 48 ? "0" : ""
  if (point === first + 1 && text.charCodeAt(first) === 48 && text.startsWith("000000", point + 1)) return undefined
  let last = end
  while (text.charCodeAt(last - 1) === 48) last--
  if (last === end) return ""
  if (last === point + 1) last = point
  const written = text.slice(begin, last)
  return written === "-0" ? "0" : written
}

/** Whether the quote at `at` is escaped: an odd run of backslashes before it. */
const escaped = (text: string, at: number): boolean => {
  let i = at - 1
  while (text.charCodeAt(i) === 92) i--
  return (at - 1 - i) % 2 === 1
}

/**
 * `jsonText(parseExact(text).value)` for the text PostgreSQL prints of a jsonb
 * value, without parsing it: jsonb already keeps keys in jsonText's order and
 * escapes strings as JSON.stringify does, so its spaces (after `:` and `,`) go
 * and numbers lose a fraction's trailing zeros. Answers undefined when a number
 * may print otherwise (`asJsonText`): parse that text.
 */
export const compactJsonb = (text: string): string | undefined => {
  let out = ""
  let from = 0
  const length = text.length
  let i = 0
  while (i < length) {
    const c = text.charCodeAt(i)
    if (c === 34) {
      // To the closing quote: indexOf skips a string's body far faster than a loop.
      let end = text.indexOf("\"", i + 1)
      while (end !== -1 && escaped(text, end)) end = text.indexOf("\"", end + 1)
      i = end === -1 ? length : end + 1
    } else if (c === 32) {
      out += text.slice(from, i)
      from = ++i
    } else if (c === 45 || (c >= 48 && c <= 57)) {
      const begin = i
      for (i++; i < length; i++) {
        const d = text.charCodeAt(i)
        if (!((d >= 48 && d <= 57) || d === 46 || d === 101 || d === 69 || d === 43 || d === 45)) break
      }
      // "" when it is written as printed.
      const written = asJsonText(text, begin, i)
      if (written === undefined) return undefined
      if (written !== "") {
        out += text.slice(from, begin) + written
        from = i
      }
    } else i++
  }
  return from === 0 ? text : out + text.slice(from)
}
