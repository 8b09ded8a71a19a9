/**
 * The composition root: reads the configuration, picks the real layers
 * (PostgreSQL or the embedded PGlite) and serves the HTTP app.
 */
// First: a V8 setting that must hold before the rest of the server runs.
import "./platform/runtime/Pretenuring.ts"
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Duration, Effect, Exit, Layer, Ref, Result, Runtime } from "effect"
import { layerServer, layerStorage, withServices } from "./App.ts"
import { ensureDevelopmentKey } from "./auth/DevelopmentKey.ts"
import { layerEventBus } from "./events/KafkaBus.ts"
import { Lifecycle } from "./health/HealthHandlers.ts"
import { CacheStore } from "./platform/cache/CacheStore.ts"
import { allFields, AppConfig } from "./platform/config/AppConfig.ts"
import { DatabaseConfig, describeDatabase } from "./platform/config/DatabaseConfig.ts"
import { HttpConfig } from "./platform/config/HttpConfig.ts"
import { EX_CONFIG, problemLine, readEnvironment } from "./platform/config/Read.ts"
import { layerLogging } from "./platform/observability/Logging.ts"
import { layerTracing } from "./platform/observability/Tracing.ts"
import { isServerProcess, superviseWorkers, workersWanted } from "./platform/runtime/Workers.ts"
import { layerConnection } from "./platform/sql/Connection.ts"

// Tracing sits under everything, so the server, the services and their
// background fibers all use its tracer (or run untraced).
const Services = withServices({ storage: layerStorage, cache: CacheStore.layerFromConfig, bus: layerEventBus }).pipe(
  Layer.provideMerge(layerConnection),
  Layer.provideMerge(layerTracing),
  Layer.provideMerge(AppConfig.layer)
)

const Server = Layer.unwrap(Effect.gen(function*() {
  const config = yield* HttpConfig
  const { databaseUrl } = yield* DatabaseConfig
  yield* Effect.logInfo("Starting Strata", { database: describeDatabase(databaseUrl), port: config.port })
  yield* ensureDevelopmentKey
  // The services are built before the server listens, so an early request is
  // answered rather than left hanging (docs/ARCHITECTURE.md, Startup).
  return layerServer()
})).pipe(Layer.provideMerge(Services))

/**
 * On SIGTERM, layers close in reverse order, so this runs first: readiness turns
 * 503 at once, and for SHUTDOWN_DELAY the server still takes requests while load
 * balancers notice. Then the server stops accepting and drains in-flight requests
 * (up to SHUTDOWN_TIMEOUT), the outbox relay stops, the pools close, exit 0.
 */
const GracefulShutdown = Layer.effectDiscard(Effect.gen(function*() {
  const lifecycle = yield* Lifecycle
  const config = yield* HttpConfig
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      yield* Ref.set(lifecycle.shuttingDown, true)
      yield* Effect.logInfo("Shutting down: readiness is 503; closing after SHUTDOWN_DELAY", {
        shutdownDelay: Duration.format(config.shutdownDelay)
      })
      yield* Effect.sleep(config.shutdownDelay)
    })
  )
})).pipe(Layer.provideMerge(Server))

const serve = () =>
  Layer.launch(GracefulShutdown).pipe(
    Effect.provide(layerLogging),
    NodeRuntime.runMain({
      // SIGTERM/SIGINT interrupt the program; a shutdown that completes is a clean exit (0), not 130.
      teardown: (exit, onExit) =>
        Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)
    })
  )

// Every variable is checked before anything starts (and before workers fork,
// which the supervisor would otherwise restart forever): one line for each bad one.
const settings = readEnvironment(allFields)
const workers = Result.isSuccess(settings) ? workersWanted(settings.success) : 1
if (Result.isFailure(settings)) {
  for (const problem of settings.failure) process.stderr.write(`${problemLine(problem)}\n`)
  process.exitCode = EX_CONFIG
} else if (typeof workers === "string") {
  process.stderr.write(`Invalid configuration: ${workers}\n`)
  process.exitCode = EX_CONFIG
} else if (workers === 1 || isServerProcess()) {
  serve()
} else {
  superviseWorkers(workers)
}
