/**
 * Compiles tenant schemas off the event loop. ajv turns a schema into code,
 * which for a large schema takes hundreds of milliseconds (see the README):
 * done on the thread that serves requests, it would stall every tenant's
 * requests for that long. A worker thread runs the checks of SchemaRules and
 * ajv's code generation; the event loop only evaluates the generated source
 * (a few to tens of milliseconds for the largest schemas allowed).
 *
 * A compile that takes longer than COMPILE_TIMEOUT is refused and its worker
 * replaced, so a schema crafted to be slow to compile costs one worker, not the
 * service. Compiles are queued on the one worker, one at a time.
 */
import type { FieldError } from "@strata/domain"
import type { ValidateFunction } from "ajv/dist/2020.js"
import { Context, Effect, Layer } from "effect"
import { Worker } from "node:worker_threads"
import { jsonText } from "../records/RecordJson.ts"
import { loadValidator } from "./SchemaRules.ts"

const COMPILE_TIMEOUT_MS = 10_000

type Answer =
  | { readonly id: number; readonly source: string }
  | { readonly id: number; readonly problems: ReadonlyArray<FieldError> }

export class SchemaCompiler extends Context.Service<SchemaCompiler, {
  /** The validator of an untrusted schema, or every reason it cannot be accepted. */
  readonly compile: (schema: unknown, maxBytes: number) => Effect.Effect<ValidateFunction, ReadonlyArray<FieldError>>
}>()("strata/SchemaCompiler") {
  static readonly layer: Layer.Layer<SchemaCompiler> = Layer.effect(
    SchemaCompiler,
    Effect.gen(function*() {
      let worker: Worker | undefined
      let nextId = 0
      const pending = new Map<number, (answer: Answer | Error) => void>()

      const failAll = (error: Error) => {
        for (const resume of pending.values()) resume(error)
        pending.clear()
      }
      const start = (): Worker => {
        const w = new Worker(new URL("./CompileWorker.ts", import.meta.url))
        // An idle worker must not keep the process (or a test run) alive.
        w.unref()
        w.on("message", (answer: Answer) => {
          const resume = pending.get(answer.id)
          pending.delete(answer.id)
          resume?.(answer)
        })
        w.on("error", (error) => {
          if (worker === w) worker = undefined
          failAll(error)
        })
        w.on("exit", () => {
          if (worker === w) worker = undefined
          failAll(new Error("the schema compile worker stopped"))
        })
        return w
      }
      yield* Effect.addFinalizer(() => Effect.promise(async () => worker?.terminate()))

      const compile = (schema: unknown, maxBytes: number) =>
        Effect.callback<ValidateFunction, ReadonlyArray<FieldError>>((resume) => {
          const w = worker ??= start()
          const id = nextId++
          const timer = setTimeout(() => {
            pending.delete(id)
            // Whatever it is doing is abandoned with it; the next compile starts a fresh one.
            if (worker === w) worker = undefined
            void w.terminate()
            resume(Effect.fail([{
              path: "schema",
              message: `took more than ${COMPILE_TIMEOUT_MS / 1000} s to compile`
            }]))
          }, COMPILE_TIMEOUT_MS)
          pending.set(id, (answer) => {
            clearTimeout(timer)
            if (answer instanceof Error) return resume(Effect.die(answer))
            if ("problems" in answer) return resume(Effect.fail(answer.problems))
            try {
              resume(Effect.succeed(loadValidator(answer.source)))
            } catch (error) {
              resume(Effect.die(error))
            }
          })
          // oxlint-disable-next-line unicorn/require-post-message-target-origin -- a worker thread, not a window
          w.postMessage({ id, text: jsonText(schema), maxBytes })
          return Effect.sync(() => {
            clearTimeout(timer)
            pending.delete(id)
          })
        })

      return SchemaCompiler.of({ compile })
    })
  )
}
