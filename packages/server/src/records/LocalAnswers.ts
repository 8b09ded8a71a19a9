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
// buffer in a second one.
interface Entry {
  readonly key: string
  readonly text: string
  /** Its UTF-8 size, with the key and the overhead: what it counts against the bound. */
  readonly size: number
  readonly expiresAt: number
}

export class LocalAnswers {
  private readonly entries = new Map<string, Entry>()
  // Entries oldest first, for eviction. Not the Map's own order: taking its first entry
  // skips every deleted slot before it, and under a steady stream of writes that
  // showed in profiles. A slot whose key was set again or
  // removed since is stale: its entry is no longer the Map's.
  private order: Array<Entry> = []
  private head = 0
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
      this.remove(entry)
      return undefined
    }
    return entry.text
  }

  set(key: string, text: string): void {
    const size = Buffer.byteLength(text) + key.length + ENTRY_OVERHEAD_BYTES
    if (size > this.maxBytes) return
    const old = this.entries.get(key)
    if (old !== undefined) this.remove(old)
    const entry: Entry = { key, text, size, expiresAt: this.now() + this.ttlMs }
    this.entries.set(key, entry)
    this.order.push(entry)
    this.bytes += size
    while (this.bytes > this.maxBytes) {
      const oldest = this.order[this.head++]
      if (this.isLive(oldest)) this.remove(oldest)
    }
    // Drop evicted and stale slots once they outnumber the live ones (amortised O(1)).
    if (this.order.length > 2 * this.entries.size + 1024) {
      this.order = this.order.slice(this.head).filter((e) => this.isLive(e))
      this.head = 0
    }
  }

  /** Bytes held, by the same count as the bound. */
  get size(): number {
    return this.bytes
  }

  /** False for a slot of `order` whose key was set again or removed since. */
  private isLive(entry: Entry): boolean {
    return this.entries.get(entry.key) === entry
  }

  private remove(entry: Entry) {
    this.entries.delete(entry.key)
    this.bytes -= entry.size
  }
}
