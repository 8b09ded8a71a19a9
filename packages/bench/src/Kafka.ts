/**
 * A Kafka broker of the bench's own, through the repository's scripts/kafka: in
 * a temporary directory, stopped and removed when the scope closes.
 */
import { Effect, type Scope } from "effect"
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
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

export interface Broker {
  /** Its address, for KAFKA_BROKERS. */
  readonly brokers: string
  /** Sends the broker's process a signal (`bench chaos` kills and stops it). */
  readonly signal: (signal: NodeJS.Signals) => void
  /** Starts it again after a kill: same port, same storage. */
  readonly start: () => Effect.Effect<void, BenchError>
}

/** Starts a broker of the bench's own; stopped and its directory removed when the scope closes. */
export const ownBroker = (log: (message: string) => void): Effect.Effect<Broker, BenchError, Scope.Scope> =>
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
    return {
      brokers,
      signal: (signal) => process.kill(Number(readFileSync(join(dir, "pid"), "utf8").trim()), signal),
      start: () => Effect.asVoid(kafkaScript(["start", "--dir", dir]))
    }
  })

/** Starts a broker of the bench's own and answers its address (for KAFKA_BROKERS). */
export const kafkaBroker = (log: (message: string) => void): Effect.Effect<string, BenchError, Scope.Scope> =>
  Effect.map(ownBroker(log), (broker) => broker.brokers)
