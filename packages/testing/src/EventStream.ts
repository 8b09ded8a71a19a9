/**
 * A Server-Sent Events client for the change feed's tests: reads a
 * `text/event-stream` answer with fetch and keeps every event, as an
 * EventSource would parse it (`event:`, `id:`, `data:`, `retry:`).
 */
export interface SseEvent {
  readonly event: string
  readonly id: string | undefined
  readonly data: string
}

export interface EventStreamClient {
  readonly status: number
  readonly headers: Headers
  readonly events: Array<SseEvent>
  /** The `retry:` values received. */
  readonly retries: Array<number>
  /** Resolves when the server ends the stream (or it is aborted or cut). */
  readonly ended: Promise<void>
  readonly abort: () => void
}

export const openEventStream = async (url: string, headers: Record<string, string>): Promise<EventStreamClient> => {
  const controller = new AbortController()
  const res = await fetch(url, { headers: { accept: "text/event-stream", ...headers }, signal: controller.signal })
  const events: Array<SseEvent> = []
  const retries: Array<number> = []
  const ended = (async () => {
    if (res.body === null) return
    const decoder = new TextDecoder()
    let buffer = ""
    try {
      for await (const chunk of res.body) {
        buffer += decoder.decode(chunk as Uint8Array, { stream: true })
        let end: number
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          let event = "message"
          let id: string | undefined
          const data: Array<string> = []
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue
            const colon = line.indexOf(":")
            const field = colon < 0 ? line : line.slice(0, colon)
            const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "")
            if (field === "event") event = value
            else if (field === "id") id = value
            else if (field === "data") data.push(value)
            else if (field === "retry") retries.push(Number(value))
          }
          if (data.length > 0) events.push({ event, id, data: data.join("\n") })
        }
      }
    } catch {
      // aborted or cut: the events so far are what the client got
    }
  })()
  return { status: res.status, headers: res.headers, events, retries, ended, abort: () => controller.abort() }
}
