/**
 * What `bench load` sends: `--mix get-hot=60,get-cold=10,range=10,post=15,batch=5`
 * (the default: 80 % reads, 20 % writes), and the requests of each kind.
 *
 * - get-hot: GET /data/{id} over records written and read once in setup (cached);
 * - get-cold: GET /data/{id} over records written in setup and never read, each
 *   read at most once, from the start again when all were (then they may be cached);
 * - range: GET /data?stream=…&limit=100;
 * - post: POST /data, a body of about 300 bytes;
 * - batch: POST /data/batch of 10 such records.
 */
import { randomBytes } from "node:crypto"
import { pick } from "./Measure.ts"
import { KEYS_PER_STREAM, STREAMS } from "./Seed.ts"

export const KINDS = ["get-hot", "get-cold", "range", "post", "batch"] as const
export type Kind = (typeof KINDS)[number]

export const DEFAULT_MIX = "get-hot=60,get-cold=10,range=10,post=15,batch=5"
export const BATCH_SIZE = 10

/** Each kind's share of the requests, summing to 1; kinds with no share are left out. */
export type Mix = ReadonlyArray<{ readonly kind: Kind; readonly share: number }>

/** `kind=weight,…`: weights are non-negative numbers, scaled to sum to 1. */
export const parseMix = (text: string): Mix => {
  const seen = new Map<Kind, number>()
  for (const item of text.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const [name, weight, ...rest] = item.split("=").map((s) => s.trim())
    if (!(KINDS as ReadonlyArray<string>).includes(name)) {
      throw new Error(`--mix: unknown kind ${JSON.stringify(name)}; the kinds are ${KINDS.join(", ")}`)
    }
    const n = Number(weight)
    if (weight === undefined || weight === "" || rest.length > 0 || !Number.isFinite(n) || n < 0) {
      throw new Error(`--mix: ${item} is not kind=weight with a non-negative number (e.g. ${DEFAULT_MIX})`)
    }
    if (seen.has(name as Kind)) throw new Error(`--mix: ${name} is given twice`)
    seen.set(name as Kind, n)
  }
  const total = [...seen.values()].reduce((a, b) => a + b, 0)
  if (total <= 0) throw new Error(`--mix: no kind has a positive weight; got ${JSON.stringify(text)}`)
  return KINDS.flatMap((kind) => {
    const weight = seen.get(kind) ?? 0
    return weight > 0 ? [{ kind, share: weight / total }] : []
  })
}

export const describeMix = (mix: Mix): string =>
  mix.map(({ kind, share }) => `${kind} ${Number((100 * share).toFixed(1))} %`).join(", ")

/** The kind for a uniform draw `u` in [0, 1): the mix's shares laid end to end. */
export const kindAt = (mix: Mix, u: number): Kind => {
  let below = 0
  for (const { kind, share } of mix) {
    below += share
    if (u < below) return kind
  }
  return mix[mix.length - 1].kind
}

/** A record of about 300 bytes of JSON, as a client of an order system might send it. */
export const loadRecord = () => ({
  stream: pick(STREAMS),
  key: `customer-${Math.floor(Math.random() * KEYS_PER_STREAM)}`,
  data: {
    orderId: randomBytes(8).toString("hex"),
    amount: Math.round(Math.random() * 100_000) / 100,
    currency: "EUR",
    status: "new",
    channel: "web",
    items: [{ sku: "A-1", qty: 2, price: 12.5 }, { sku: "B-7", qty: 1, price: 99.9 }],
    shipping: { city: "Lyon", country: "FR", postcode: "69002" },
    note: "leave at the door"
  }
})

export interface Request {
  readonly method: "GET" | "POST"
  readonly path: string
  readonly body?: string
}

/**
 * Makes requests of each kind. Bodies are made up front (1,000 singles, 200
 * batches) so the generator spends its CPU sending, not in JSON.stringify.
 */
export const requestMaker = (hotIds: ReadonlyArray<string>, coldIds: ReadonlyArray<string>) => {
  const singles = Array.from({ length: 1_000 }, () => JSON.stringify(loadRecord()))
  const batches = Array.from(
    { length: 200 },
    () => JSON.stringify({ records: Array.from({ length: BATCH_SIZE }, loadRecord) })
  )
  let nextCold = 0
  let coldWraps = 0
  const make = (kind: Kind): Request => {
    switch (kind) {
      case "get-hot":
        return { method: "GET", path: `/data/${pick(hotIds)}` }
      case "get-cold": {
        if (nextCold === coldIds.length) {
          nextCold = 0
          coldWraps++
        }
        return { method: "GET", path: `/data/${coldIds[nextCold++]}` }
      }
      case "range":
        return { method: "GET", path: `/data?stream=${encodeURIComponent(pick(STREAMS))}&limit=100` }
      case "post":
        return { method: "POST", path: "/data", body: pick(singles) }
      case "batch":
        return { method: "POST", path: "/data/batch", body: pick(batches) }
    }
  }
  return {
    make,
    /** How many times get-cold ran out of unread ids and started over. */
    coldWraps: () => coldWraps
  }
}
