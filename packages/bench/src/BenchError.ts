/**
 * The one failure the bench programs have: a sentence for the person at the
 * terminal, printed after the command's name (`bench: …`), exit code 1.
 */
import { Data, Effect } from "effect"

export class BenchError extends Data.TaggedError("BenchError")<{ readonly message: string }> {}

export const errorText = (e: unknown): string => e instanceof Error ? e.message : String(e)

/**
 * A promise-returning step as an Effect failing with its message. A step that
 * takes the signal stops when the Effect is interrupted (Ctrl-C): load left
 * running would hold up the servers' graceful stop, and with it the cleanup.
 */
export const attempt = <A>(run: (signal: AbortSignal) => Promise<A>): Effect.Effect<A, BenchError> =>
  Effect.tryPromise({ try: run, catch: (e) => new BenchError({ message: errorText(e) }) })

/** A finalizer's failure: said on stderr and the run exits 1, but the other finalizers still run. */
export const reportCleanupFailure = (log: (message: string) => void, what: string) => (e: BenchError) =>
  Effect.sync(() => {
    log(`${what} failed: ${e.message}`)
    process.exitCode = 1
  })
