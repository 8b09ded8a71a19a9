/**
 * A Kafka broker of the bench's own, through the repository's scripts/kafka: in
 * a temporary directory, stopped and removed when the scope closes.
 */
import { Effect, type Scope } from "effect"
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { BenchError, reportCleanupFailure } from "./BenchError.ts"

/** The repository's broker script: a shell entry point that stays in scripts/. */
const KAFKA_SCRIPT = fileURLToPath(new URL("../../../scripts/kafka", import.meta.url))

const kafkaScript = (args: ReadonlyArray<string>): Effect.Effect<string, BenchError> =>
  Effect.callback<string, BenchError>((resume) => {
    execFile(KAFKA_SCRIPT, args, (error, stdout, stderr) =>
      resume(
        error === null
          ? Effect.succeed(stdout)
          : Effect.fail(
            new BenchError({ message: `scripts/kafka ${args.join(" ")}: ${stderr.trim() || error.message}` })
          )
      ))
  })

/** Starts the broker and answers its address (for KAFKA_BROKERS). */
export const kafkaBroker = (log: (message: string) => void): Effect.Effect<string, BenchError, Scope.Scope> =>
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "strata-bench-kafka-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    log("starting a broker")
    const started = yield* Effect.acquireRelease(
      kafkaScript(["start", "--dir", dir]),
      () => kafkaScript(["stop", "--dir", dir]).pipe(Effect.catch(reportCleanupFailure(log, "stopping the broker")))
    )
    const brokers = /KAFKA_BROKERS=(\S+)/.exec(started)?.[1]
    if (brokers === undefined) {
      return yield* new BenchError({ message: `scripts/kafka start printed no address: ${started}` })
    }
    return brokers
  })
