/**
 * Compiles tenant schemas off the event loop. ajv turns a schema into code,
 * which for a large schema takes hundreds of milliseconds (see the README):
 * done on the thread that serves requests, it would stall every tenant's
 * requests for that long. A worker thread runs the checks of SchemaRules and
 * ajv's code generation; the event loop only evaluates the generated source
 * (a few to tens of milliseconds for the largest schemas allowed).
 *
 * The worker compiles one schema at a time, in order. One that compiles for
 * longer than the timeout (10 s) is refused and its worker replaced, so a
 * schema crafted to be slow to compile costs a worker, not the service; the
 * compiles queued behind it go to the new worker.
 */
import type { FieldError } from "@strata/domain"
import type { ValidateFunction } from "ajv/dist/2020.js"
import { Context, Effect, Exit, Layer } from "effect"
import { Worker } from "node:worker_threads"
import { jsonText } from "../platform/json/ExactJson.ts"
import { loadValidator } from "./SchemaRules.ts"

export const COMPILE_TIMEOUT_MS = 10_000

type Answer =
  | { readonly id: number; readonly started: true }
  | { readonly id: number; readonly source: string }
  | { readonly id: number; readonly problems: ReadonlyArray<FieldError> }

interface Job {
  readonly message: { readonly id: number; readonly text: string; readonly maxBytes: number }
  readonly done: (exit: Exit.Exit<ValidateFunction, ReadonlyArray<FieldError>>) => void
  timer?: ReturnType<typeof setTimeout>
}

export class SchemaCompiler extends Context.Service<SchemaCompiler, {
  /** The validator of an untrusted schema, or every reason it cannot be accepted. */
  readonly compile: (schema: unknown, maxBytes: number) => Effect.Effect<ValidateFunction, ReadonlyArray<FieldError>>
}>()("strata/schemas/SchemaCompiler") {
  /** `workerUrl`: the worker's script (tests give one that can hang). */
  static readonly layerWith = (
    timeoutMs: number,
    workerUrl: URL = new URL("./CompileWorker.ts", import.meta.url)
  ): Layer.Layer<SchemaCompiler> =>
    Layer.effect(
      SchemaCompiler,
      Effect.gen(function*() {
        let worker: Worker | undefined
        let nextId = 0
        const jobs = new Map<number, Job>()

        const settle = (id: number, exit: Exit.Exit<ValidateFunction, ReadonlyArray<FieldError>>) => {
          const job = jobs.get(id)
          if (job === undefined) return
          jobs.delete(id)
          clearTimeout(job.timer)
          job.done(exit)
        }

        const timedOut = (w: Worker, id: number) => {
          settle(id, Exit.fail([{ path: "schema", message: `took more than ${timeoutMs / 1000} s to compile` }]))
          // Whatever it was doing is abandoned with it; the queued compiles start over on a new one.
          worker = undefined
          void w.terminate()
          if (jobs.size > 0) {
            const fresh = current()
            for (const job of jobs.values()) post(fresh, job)
          }
        }

        const start = (): Worker => {
          const w = new Worker(workerUrl)
          // An idle worker must not keep the process (or a test run) alive.
          w.unref()
          w.on("message", (answer: Answer) => {
            if ("started" in answer) {
              const job = jobs.get(answer.id)
              if (job !== undefined) job.timer = setTimeout(() => timedOut(w, answer.id), timeoutMs)
              return
            }
            if ("problems" in answer) return settle(answer.id, Exit.fail(answer.problems))
            let validate: ValidateFunction
            try {
              validate = loadValidator(answer.source)
            } catch (error) {
              return settle(answer.id, Exit.die(error))
            }
            settle(answer.id, Exit.succeed(validate))
          })
          // A worker that fails on its own (not one replaced above) is a bug: its compiles die.
          const lost = (error: unknown) => {
            if (worker !== w) return
            worker = undefined
            for (const id of jobs.keys()) settle(id, Exit.die(error))
          }
          w.on("error", lost)
          w.on("exit", (code) => lost(new Error(`the schema compile worker exited (${code})`)))
          return w
        }
        const current = () => (worker ??= start())
        // oxlint-disable-next-line unicorn/require-post-message-target-origin -- a worker thread, not a window
        const post = (w: Worker, job: Job) => w.postMessage(job.message)
        yield* Effect.addFinalizer(() => Effect.promise(async () => worker?.terminate()))

        const compile = (schema: unknown, maxBytes: number) =>
          Effect.callback<ValidateFunction, ReadonlyArray<FieldError>>((resume) => {
            const id = nextId++
            const job: Job = { message: { id, text: jsonText(schema), maxBytes }, done: resume }
            jobs.set(id, job)
            post(current(), job)
            return Effect.sync(() => {
              clearTimeout(job.timer)
              jobs.delete(id)
            })
          })

        return SchemaCompiler.of({ compile })
      })
    )

  static readonly layer: Layer.Layer<SchemaCompiler> = SchemaCompiler.layerWith(COMPILE_TIMEOUT_MS)
}
