/**
 * What every request leaves behind once it is answered, on either request path
 * (README: Operations): the gauge of requests in flight, its duration by
 * method, route template and status class, and its access line under the
 * request id the client got back. The HttpApi app is wrapped by `measure`; the
 * hot routes keep a `RouteBook` per route and call it from their callbacks.
 */
import { Context, Effect, Layer, Tracer } from "effect"
import { HttpServerRequest, type HttpServerResponse } from "effect/http"
import { TelemetryConfig } from "../config/TelemetryConfig.ts"
import { routeOf } from "../http/RouteTable.ts"
import { makeAccessLog } from "./AccessLog.ts"
import {
  durationFor,
  durationsOf,
  layerHttpMetrics,
  requestLeft,
  type RequestOutcome,
  requestStarted
} from "./HttpMetrics.ts"

/** The bookkeeping of one route, its metric series looked up once. */
export interface RouteBook {
  /** The request began; answers its start, for `ended`. */
  readonly started: () => number
  /** The request was answered with `status`. */
  readonly ended: (status: number, start: number, requestId: string, span: Tracer.AnySpan | undefined) => void
  /** The request was handed on, to be answered and booked elsewhere. */
  readonly passedOn: () => void
}

export class RequestBookkeeping extends Context.Service<RequestBookkeeping, {
  readonly route: (method: string, route: string) => RouteBook
  /** Books `app`, which must already turn every failure into a response. */
  readonly measure: <E, R>(
    app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
  ) => Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
}>()("strata/observability/RequestBookkeeping") {
  static readonly layer: Layer.Layer<RequestBookkeeping, never, TelemetryConfig> = Layer.effect(
    RequestBookkeeping,
    Effect.gen(function*() {
      const { accessLog } = yield* TelemetryConfig
      const context = yield* Effect.context<never>()
      const log = makeAccessLog(context, accessLog)

      const book = (
        outcome: RequestOutcome,
        duration: ReturnType<typeof durationFor>,
        span: Tracer.AnySpan | undefined
      ) => {
        requestLeft()
        duration.updateUnsafe(outcome.seconds, context)
        log?.(outcome, span)
      }

      const route = (method: string, template: string): RouteBook => {
        const durations = durationsOf(method, template)
        return {
          started: () => {
            requestStarted()
            return performance.now()
          },
          ended: (status, start, requestId, span) =>
            book(
              { method, route: template, status, seconds: (performance.now() - start) / 1000, requestId },
              durations(status),
              span
            ),
          passedOn: requestLeft
        }
      }

      const measure = <E, R>(app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
        Effect.withFiber<HttpServerResponse.HttpServerResponse, E, R>((fiber) => {
          const request = Context.getUnsafe(fiber.context, HttpServerRequest.HttpServerRequest)
          const start = performance.now()
          requestStarted()
          return Effect.onExit(app, (exit) =>
            Effect.sync(() => {
              const template = routeOf(request.url)
              // Only an interruption (the client went away) fails here: 499, as nginx says.
              const outcome: RequestOutcome = {
                method: request.method,
                route: template,
                status: exit._tag === "Success" ? exit.value.status : 499,
                seconds: (performance.now() - start) / 1000,
                requestId: exit._tag === "Success" ? exit.value.headers["x-request-id"] : undefined
              }
              book(
                outcome,
                durationFor(outcome.method, template, outcome.status),
                Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
              )
            }))
        })

      return RequestBookkeeping.of({ route, measure })
    })
  ).pipe(Layer.provideMerge(layerHttpMetrics))
}
