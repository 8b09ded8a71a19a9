/**
 * The schema compile worker, except that a schema holding "x-hang" keeps it
 * busy forever: a compile that never ends, for the time-limit test.
 */
import { parentPort } from "node:worker_threads"

parentPort!.on("message", (message: { readonly id: number; readonly text: string }) => {
  if (!message.text.includes("x-hang")) return
  // oxlint-disable-next-line unicorn/require-post-message-target-origin -- a worker thread, not a window
  parentPort!.postMessage({ id: message.id, started: true })
  for (;;) {
    // Busy, as a runaway compile would be: the worker's own listener never runs.
  }
})

await import("../../src/schemas/CompileWorker.ts")
