/**
 * Sequential writers against a running server, one key each: each POSTs a
 * record, waits for the answer, then sends the next, so per key the order of
 * the answers is the order of the writes. The suites that stop or kill a broker
 * run them while they do.
 */
import { recordOf } from "./Bodies.ts"
import { dataHeaders, type ServerProcess } from "./ServerProcess.ts"
import { sleep } from "./Waiting.ts"

export interface KeyedWrite {
  readonly id: string
  readonly key: string
  readonly status: number
  /** How long the answer took. */
  readonly ms: number
}

/** `writers` clients on `stream` (keys `writer-0`…) until `stop()`, which answers every write. */
export const keyedWriters = (server: ServerProcess, options: { readonly stream: string; readonly writers: number }) => {
  const state = { running: true }
  const writes: Array<KeyedWrite> = []
  const done = Promise.all(Array.from({ length: options.writers }, async (_, w) => {
    const key = `writer-${w}`
    for (let i = 0; state.running; i++) {
      const start = performance.now()
      const res = await fetch(`${server.base}/data`, {
        method: "POST",
        headers: dataHeaders(server),
        body: JSON.stringify({ stream: options.stream, key, data: { w, i } })
      })
      const body = await recordOf(res)
      writes.push({ id: body.id, key, status: res.status, ms: performance.now() - start })
      await sleep(5)
    }
  }))
  return {
    writes,
    stop: async () => {
      state.running = false
      await done
      return writes
    }
  }
}
