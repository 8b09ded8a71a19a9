/**
 * The composition root: reads the configuration, picks the real layers
 * (PostgreSQL or the embedded PGlite) and serves the HTTP app.
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { HttpRouter } from "effect/http"
import { createServer } from "node:http"
import { Cache } from "./cache/Cache.ts"
import { AppConfig, describeDatabase } from "./config/AppConfig.ts"
import { DatabaseLive } from "./db/Database.ts"
import { EventBus } from "./events/EventBus.ts"
import { AppRoutes, StorageLive, withServices } from "./http/App.ts"
import { LoggingLive } from "./observability/Logging.ts"

const Services = withServices(StorageLive, Cache.layerFromConfig, EventBus.layerFromConfig).pipe(
  Layer.provideMerge(DatabaseLive),
  Layer.provideMerge(AppConfig.layer)
)

const Server = Layer.unwrap(Effect.gen(function*() {
  const config = yield* AppConfig
  yield* Effect.logInfo("Starting Strata", { database: describeDatabase(config.databaseUrl), port: config.port })
  // The services are built before the server listens, so an early request is
  // answered rather than left hanging (EFFECT4.md, startup race).
  return HttpRouter.serve(AppRoutes, { disableLogger: !config.accessLog }).pipe(
    Layer.provide(NodeHttpServer.layer(createServer, { port: config.port, host: config.host }))
  )
})).pipe(Layer.provide(Services))

Layer.launch(Server).pipe(
  Effect.provide(LoggingLive),
  NodeRuntime.runMain
)
