/**
 * Liveness and readiness (SPEC §2 Operations). Readiness is 200 only while the
 * database answers and the server is not shutting down; the body lists each
 * dependency as up, degraded or down.
 */
import { Api, type Readiness } from "@strata/domain"
import { Context, Effect } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import { RecordCache } from "../cache/RecordCache.ts"
import { Db } from "../db/Db.ts"

/** Flipped to true on SIGTERM, so load balancers stop sending traffic before the server stops. */
export class ShuttingDown extends Context.Reference<{ value: boolean }>("strata/ShuttingDown", {
  defaultValue: () => ({ value: false })
}) {}

export const HealthHandlers = HttpApiBuilder.group(
  Api,
  "health",
  Effect.fn(function*(handlers) {
    const db = yield* Db
    const recordCache = yield* RecordCache
    const shuttingDown = yield* ShuttingDown
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
          const server = shuttingDown.value ? "down" as const : "up" as const
          // The cache is optional: without it the service is degraded, not down.
          const report: Readiness = {
            status: database === "up" && server === "up" ? (cache === "up" ? "up" : "degraded") : "down",
            dependencies: { database, cache, server }
          }
          return report.status === "down" ? yield* Effect.fail(report) : report
        }))
  })
)
