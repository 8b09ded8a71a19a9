/**
 * Liveness and readiness (README: Operations). Readiness is 200 only while the
 * database answers and the server is not shutting down; the body lists each
 * dependency as up, degraded or down.
 */
import { Api, type Readiness } from "@strata/domain"
import { Context, Effect, Layer, Ref } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import { Database } from "../platform/sql/Database.ts"
import { ReadReplicas } from "../platform/sql/ReadReplicas.ts"
import { RecordCache } from "../records/RecordCache.ts"

/**
 * The process's lifecycle: `shuttingDown` turns true on SIGTERM, so readiness
 * answers 503 and load balancers stop sending traffic before the server closes.
 */
export class Lifecycle extends Context.Service<Lifecycle, { readonly shuttingDown: Ref.Ref<boolean> }>()(
  "strata/health/Lifecycle"
) {
  static readonly layer: Layer.Layer<Lifecycle> = Layer.effect(
    Lifecycle,
    Effect.map(Ref.make(false), (shuttingDown) => Lifecycle.of({ shuttingDown }))
  )
}

export const HealthHandlers = HttpApiBuilder.group(
  Api,
  "health",
  Effect.fn(function*(handlers) {
    const db = yield* Database
    const recordCache = yield* RecordCache
    const lifecycle = yield* Lifecycle
    const readReplicas = yield* ReadReplicas
    return handlers
      .handle("live", () => Effect.succeed({ status: "up" as const }))
      .handle("ready", () =>
        Effect.gen(function*() {
          const database = yield* db.ping.pipe(
            Effect.timeout("1 second"),
            Effect.as("up" as const),
            Effect.orElseSucceed(() => "down" as const)
          )
          const cache = yield* recordCache.health
          const replicas = yield* readReplicas.health
          const server = (yield* Ref.get(lifecycle.shuttingDown)) ? "down" as const : "up" as const
          // The cache and the replicas are optional: without them the service is degraded, not down.
          const optional = cache === "up" && replicas !== "degraded" ? "up" : "degraded"
          const report: Readiness = {
            status: database === "up" && server === "up" ? optional : "down",
            dependencies: { database, cache, ...(replicas === undefined ? {} : { replicas }), server }
          }
          return report.status === "down" ? yield* Effect.fail(report) : report
        }))
  })
)
