/**
 * UUIDv7 ids whose 48-bit time prefix is the record's `occurredAt` (README: The API),
 * so a lookup by id knows which time partition holds the row.
 */
import { randomFillSync } from "node:crypto"

const HEX: ReadonlyArray<string> = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

// Random bytes are drawn 4 KiB at a time: a system call per id showed in profiles.
const POOL = new Uint8Array(4096)
let used = POOL.length

/** A new UUIDv7 for a record that occurred at `occurredAtMs` (milliseconds since the epoch). */
export const makeRecordId = (occurredAtMs: number): string => {
  if (used + 16 > POOL.length) {
    randomFillSync(POOL)
    used = 0
  }
  const bytes = POOL.slice(used, used + 16)
  used += 16
  let ms = occurredAtMs
  for (let i = 5; i >= 0; i--) {
    bytes[i] = ms % 256
    ms = Math.floor(ms / 256)
  }
  bytes[6] = (bytes[6] & 0x0f) | 0x70 // version 7
  bytes[8] = (bytes[8] & 0x3f) | 0x80 // RFC 9562 variant
  let out = ""
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) out += "-"
    out += HEX[bytes[i]]
  }
  return out
}

/** The time prefix of a UUIDv7 in milliseconds, or undefined when `id` is not a UUIDv7. */
export const recordIdTime = (id: string): number | undefined => {
  if (!UUID.test(id) || id[14] !== "7") return undefined
  return Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16)
}
