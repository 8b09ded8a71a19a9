/**
 * Redis Cluster's hash slot of a key (the cluster specification's "Key
 * distribution model"): CRC16 (XMODEM) of the key's bytes modulo 16384, or of
 * the hash tag alone when the key has one (`{…}` with something between the
 * first `{` and the next `}`). A multi-key command such as MGET must name keys
 * of one slot on a cluster, so the cache groups its keys by this.
 */

export const SLOTS = 16_384

const TABLE = (() => {
  const table = new Uint16Array(256)
  for (let i = 0; i < 256; i++) {
    let crc = i << 8
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
    table[i] = crc
  }
  return table
})()

const encoder = new TextEncoder()

/**
 * The bytes of `key` as Redis sees them (UTF-8). Keys are nearly always ASCII,
 * whose char codes are their bytes: no copy is made for them.
 */
const bytesOf = (key: string): { readonly length: number; readonly at: (i: number) => number } => {
  for (let i = 0; i < key.length; i++) {
    if (key.charCodeAt(i) > 0x7f) {
      const bytes = encoder.encode(key)
      return { length: bytes.length, at: (i) => bytes[i] }
    }
  }
  return { length: key.length, at: (i) => key.charCodeAt(i) }
}

/** The slot (0–16383) that holds `key` on a Redis Cluster. */
export const keySlot = (key: string): number => {
  const bytes = bytesOf(key)
  let start = 0
  let end = bytes.length
  const open = indexOf(bytes, 0x7b, 0) // {
  if (open !== -1) {
    const close = indexOf(bytes, 0x7d, open + 1) // }
    if (close > open + 1) {
      start = open + 1
      end = close
    }
  }
  let crc = 0
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ bytes.at(i)) & 0xff]
  return crc % SLOTS
}

const indexOf = (bytes: ReturnType<typeof bytesOf>, byte: number, from: number): number => {
  for (let i = from; i < bytes.length; i++) if (bytes.at(i) === byte) return i
  return -1
}
