/**
 * UUIDv7 ids whose 48-bit time prefix is the record's `occurredAt` (README: The API),
 * so a lookup by id knows which time partition holds the row.
 */
import { randomFillSync } from "node:crypto"

/** Each byte's two hex digits, as character codes: HEX_DIGITS[2b] and HEX_DIGITS[2b + 1]. */
const HEX_DIGITS = Uint8Array.from(
  { length: 512 },
  (_, i) => "0123456789abcdef".charCodeAt(i % 2 === 0 ? i >> 5 : (i >> 1) & 15)
)
/**
 * Where an id's 36 characters are written before they become one string. Added
 * up with `+=`, they made a tree of 14 string pieces, 480 bytes an id against 56
 * flat, held by every record waiting for its commit (an atomic bulk body of
 * 200,000 held 86 MB of them), and took four times as long.
 */
const TEXT = Buffer.alloc(36)
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
  // The id's 16 bytes are written over its place in the pool (used once), not copied out of it.
  const base = used
  used += 16
  let ms = occurredAtMs
  for (let i = 5; i >= 0; i--) {
    POOL[base + i] = ms % 256
    ms = Math.floor(ms / 256)
  }
  POOL[base + 6] = (POOL[base + 6] & 0x0f) | 0x70 // version 7
  POOL[base + 8] = (POOL[base + 8] & 0x3f) | 0x80 // RFC 9562 variant
  let at = 0
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) TEXT[at++] = 45 // "-"
    const byte = POOL[base + i]
    TEXT[at++] = HEX_DIGITS[2 * byte]
    TEXT[at++] = HEX_DIGITS[2 * byte + 1]
  }
  return TEXT.toString("latin1", 0, 36)
}

/** The time prefix of a UUIDv7 in milliseconds, or undefined when `id` is not a UUIDv7. */
export const recordIdTime = (id: string): number | undefined => {
  if (!UUID.test(id) || id[14] !== "7") return undefined
  return Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16)
}
