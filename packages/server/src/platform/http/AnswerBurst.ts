/**
 * Answers written back to back, once per turn of the event loop (docs/PERFORMANCE.md).
 *
 * A socket write that finds its reader asleep wakes it from inside the write:
 * on loopback, and worse in a VM, that wakeup was most of what a cached read
 * cost. Written the moment each request was handled, one by one between
 * reading the next requests, nearly every answer woke the client anew; written
 * together after the turn's I/O, most find it still awake reading the ones
 * before. The hot routes send the answers of reads this way; a group commit's
 * answers already go out together.
 *
 * An answer waits at most for the rest of its turn (the `check` phase, via
 * `setImmediate`), and under load not even that: the client's next request
 * would only be read in the next turn anyway.
 */
import type { ServerResponse } from "node:http"
import { perTurn } from "../runtime/PerTurn.ts"

export type AnswerBurst = (response: ServerResponse, write: () => void) => void

/**
 * `write` (which answers `response`) runs with the other answers of this turn.
 * One that throws is given to `onDefect` with its response; the others are still written.
 */
export const makeAnswerBurst = (onDefect: (error: unknown, response: ServerResponse) => void): AnswerBurst => {
  const answer = perTurn<{ readonly response: ServerResponse; readonly write: () => void }>((answers) => {
    for (const { response, write } of answers) {
      try {
        write()
      } catch (error) {
        onDefect(error, response)
      }
    }
  })
  return (response, write) => answer({ response, write })
}
