/**
 * The body of the schema compile worker (see SchemaCompiler): receives a
 * schema as JSON text, answers the validator's source or why it is refused.
 */
import { Result } from "effect"
import { parentPort } from "node:worker_threads"
import { parseExact } from "../platform/json/ExactJson.ts"
import { compileSchemaSource } from "./SchemaRules.ts"

parentPort!.on("message", (message: { readonly id: number; readonly text: string; readonly maxBytes: number }) => {
  // The compile's time limit runs from here, not from when it was queued.
  // oxlint-disable-next-line unicorn/require-post-message-target-origin -- a worker thread, not a window
  parentPort!.postMessage({ id: message.id, started: true })
  const parsed = parseExact(message.text)
  const result = compileSchemaSource(
    parsed._tag === "Parsed" ? parsed.value : JSON.parse(message.text),
    message.maxBytes
  )
  const answer = Result.isSuccess(result)
    ? { id: message.id, source: result.success }
    : { id: message.id, problems: result.failure }
  // oxlint-disable-next-line unicorn/require-post-message-target-origin -- a worker thread, not a window
  parentPort!.postMessage(answer)
})
