/**
 * The first cache level for `GET /data/{id}`: the serialised answer (its JSON text)
 * of records read or written lately, in process. Records never change, so an
 * entry needs no invalidation, only a bound: RECORD_CACHE_BYTES in all (the
 * oldest written go first) and CACHE_TTL each, as in Redis (so records that
 * retention dropped do not linger). A hit costs no Redis round trip and no JSON
 * work. 404s are not kept here: another replica may store the id at any moment,
 * and only the shared Redis entry is dropped when it does.
 */

/** Map overhead and the key, roughly, so many small entries are bounded too. */
const ENTRY_OVERHEAD_BYTES = 160

// Text, not bytes: a string body is written with the headers in one write, a
// buffer in a second one (measured: about 8 % more cached GETs with text).
interface Entry {
  readonly text: string
  /** Its UTF-8 size, with the key and the overhead: what it counts against the bound. */
  readonly size: number
  readonly expiresAt: number
}

export class LocalAnswers {
  private readonly entries = new Map<string, Entry>()
  private bytes = 0
  private readonly maxBytes: number
  private readonly ttlMs: number
  private readonly now: () => number

  /** `now`: milliseconds since the epoch, from the owner's Clock (a test clock in tests). */
  constructor(maxBytes: number, ttlMs: number, now: () => number) {
    this.maxBytes = maxBytes
    this.ttlMs = ttlMs
    this.now = now
  }

  get(key: string): string | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAt <= this.now()) {
      this.remove(key, entry)
      return undefined
    }
    return entry.text
  }

  set(key: string, text: string): void {
    const size = Buffer.byteLength(text) + key.length + ENTRY_OVERHEAD_BYTES
    if (size > this.maxBytes) return
    const old = this.entries.get(key)
    if (old !== undefined) this.remove(key, old)
    this.entries.set(key, { text, size, expiresAt: this.now() + this.ttlMs })
    this.bytes += size
    while (this.bytes > this.maxBytes) {
      const [oldestKey, oldest] = this.entries.entries().next().value!
      this.remove(oldestKey, oldest)
    }
  }

  /** Bytes held, by the same count as the bound. */
  get size(): number {
    return this.bytes
  }

  private remove(key: string, entry: Entry) {
    this.entries.delete(key)
    this.bytes -= entry.size
  }
}
