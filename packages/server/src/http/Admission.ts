/**
 * Load shedding and deadlines for the `/data` routes (SPEC §6): past
 * MAX_IN_FLIGHT concurrent requests a new one gets an immediate 503, and a
 * request still running after REQUEST_TIMEOUT is answered 503 — both with
 * `Retry-After` — instead of a slow answer. A write cut off by the deadline may
 * still commit: clients retry with the same Idempotency-Key to be safe.
 * Health and metrics routes are never shed, so probes see the truth.
 */
import { Unavailable } from "@strata/domain"
import { Context, Effect } from "effect"
import { HttpServerRequest, HttpServerRespondable, type HttpServerResponse } from "effect/http"
import type { Settings } from "../config/AppConfig.ts"

export const makeAdmission = (config: Pick<Settings, "maxInFlight" | "requestTimeout">) => {
  let inFlight = 0
  return <E, R>(app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
    Effect.withFiber((fiber) => {
      const request = Context.getUnsafe(fiber.context, HttpServerRequest.HttpServerRequest)
      if (!request.url.startsWith("/data")) return app
      if (inFlight >= config.maxInFlight) {
        return HttpServerRespondable.toResponse(
          new Unavailable({ detail: "Too many requests in flight (MAX_IN_FLIGHT); retry shortly." })
        )
      }
      inFlight++
      return app.pipe(
        Effect.timeoutOrElse({
          duration: config.requestTimeout,
          orElse: () =>
            HttpServerRespondable.toResponse(
              new Unavailable({ detail: "The request did not finish within REQUEST_TIMEOUT; retry shortly." })
            )
        }),
        Effect.ensuring(Effect.sync(() => inFlight--))
      )
    })
}
