/**
 * Load shedding and deadlines for the `/data` routes (README: Resilience): past
 * MAX_IN_FLIGHT concurrent requests a new one gets an immediate 503, and a
 * request still running after REQUEST_TIMEOUT is answered 503 — both with
 * `Retry-After` — instead of a slow answer. A write cut off by the deadline may
 * still commit: clients retry with the same Idempotency-Key to be safe.
 * Health and metrics routes are never shed, so probes see the truth, and
 * neither are change feed tails (isEventStream).
 * One count serves the HttpApi routes and the hot routes alike.
 */
import { Unavailable } from "@strata/domain"
import { Context, Effect, Layer } from "effect"
import { HttpServerRequest, type HttpServerResponse } from "effect/http"
import { HttpConfig } from "../config/HttpConfig.ts"
import { problemResponse } from "./Problems.ts"
import { groupOf, routeOf } from "./RouteTable.ts"

/**
 * A request for a stream of Server-Sent Events (a change feed tail): a
 * subscription that lives as long as the client wants, so neither
 * MAX_IN_FLIGHT nor REQUEST_TIMEOUT applies to it; it has caps of its own.
 */
export const isEventStream = (accept: string | undefined): boolean =>
  accept !== undefined && accept.toLowerCase().includes("text/event-stream")

/** The contract's groups whose requests are shed and bounded. */
const ADMITTED_GROUPS: ReadonlySet<string | undefined> = new Set(["records", "changes"])

export const tooManyInFlight = () =>
  new Unavailable({ detail: "Too many requests in flight (MAX_IN_FLIGHT); retry shortly." })
export const pastDeadline = () =>
  new Unavailable({ detail: "The request did not finish within REQUEST_TIMEOUT; retry shortly." })

export class Admission extends Context.Service<Admission, {
  /** Takes a place among the requests in flight; false when MAX_IN_FLIGHT are (for the hot routes). */
  readonly enterUnsafe: () => boolean
  readonly leaveUnsafe: () => void
  /** The HttpApi side: sheds and bounds the records routes (`/data…`). */
  readonly guard: <E, R>(
    app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
  ) => Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
}>()("strata/http/Admission") {
  static readonly layer: Layer.Layer<Admission, never, HttpConfig> = Layer.effect(
    Admission,
    Effect.gen(function*() {
      const config = yield* HttpConfig
      let inFlight = 0
      const enter = () => {
        if (inFlight >= config.maxInFlight) return false
        inFlight++
        return true
      }
      const leave = () => void inFlight--
      const guard = <E, R>(app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
        Effect.withFiber<HttpServerResponse.HttpServerResponse, E, R>((fiber) => {
          const request = Context.getUnsafe(fiber.context, HttpServerRequest.HttpServerRequest)
          if (!ADMITTED_GROUPS.has(groupOf(routeOf(request.url))) || isEventStream(request.headers.accept)) return app
          if (!enter()) return problemResponse(tooManyInFlight())
          return app.pipe(
            Effect.timeoutOrElse({
              duration: config.requestTimeout,
              orElse: () => problemResponse(pastDeadline())
            }),
            Effect.ensuring(Effect.sync(leave))
          )
        })
      return Admission.of({ enterUnsafe: enter, leaveUnsafe: leave, guard })
    })
  )
}
