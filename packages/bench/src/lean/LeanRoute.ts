/**
 * The lean Effect route: `GET /data/:id` on `NodeHttpServer` + `HttpRouter`, doing the
 * per-request work of records/HotRoutes.ts in the handler (key lookup, token take,
 * cache lookup, If-None-Match, the six headers) and answering with
 * `HttpServerResponse.text`. The platform writes the answer (one fiber per request).
 *
 * LEAN_STYLE picks the handler:
 * - `direct` (default): one `Effect.withFiber` reading the request and the route's params
 *   from the fiber's context and answering `Effect.succeed(response)`: as few effects as
 *   a route can be;
 * - `gen`: the idiomatic form, an `Effect.fnUntraced` generator over the request that
 *   yields `HttpRouter.params` and a `Records` service.
 * LEAN_MIDDLEWARE=1 keeps the platform's logger middleware (and with it the tracer
 * middleware's span; logs below Warn are dropped, so nothing is printed); the default
 * serves with `disableLogger: true` and the native tracer, the platform's untraced
 * single-frame path (HttpEffect.toHandled).
 *
 *   PORT=3210 [LEAN_STYLE=gen] [LEAN_MIDDLEWARE=1] node packages/bench/src/lean/LeanRoute.ts
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Context, Effect, Layer, References } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { createServer } from "node:http"
import {
  cache,
  CACHE_HIT,
  keyFor,
  matchesEtag,
  portOf,
  rateLimitPolicy,
  rateLimitState,
  RECORD_CACHE_CONTROL,
  requestIdOf,
  take
} from "./Fixture.ts"

const problem = (status: number) =>
  HttpServerResponse.text(JSON.stringify({ status }), { status, contentType: "application/problem+json" })

/** The answer to a read of `rawId` with these headers, as HotRoutes.ts gives it. */
const answer = (headers: HttpServerRequest.HttpServerRequest["headers"], rawId: string | undefined) => {
  const now = Date.now()
  const key = keyFor(headers.authorization, now)
  if (key === undefined) return problem(401)
  const id = (rawId ?? "").toLowerCase()
  const body = cache.get(key.tenant)?.get(id)
  if (body === undefined) return problem(404)
  const decision = take(key, now)
  if (decision === undefined) return problem(429)
  const etag = `"${id}"`
  const ifNoneMatch = headers["if-none-match"]
  const responseHeaders: Record<string, string> = {
    etag,
    "cache-control": RECORD_CACHE_CONTROL,
    "cache-status": CACHE_HIT,
    "x-request-id": requestIdOf(headers["x-request-id"]),
    "ratelimit-policy": rateLimitPolicy(key.rateLimit),
    ratelimit: rateLimitState(decision)
  }
  return ifNoneMatch !== undefined && matchesEtag(ifNoneMatch, etag)
    ? HttpServerResponse.empty({ status: 304, headers: responseHeaders })
    : HttpServerResponse.text(body, { contentType: "application/json", headers: responseHeaders })
}

/** `direct`: one effect, the request and params read from the fiber's context. */
const direct = Effect.withFiber<HttpServerResponse.HttpServerResponse>((fiber) => {
  const context = fiber.context as Context.Context<HttpServerRequest.HttpServerRequest | HttpRouter.RouteContext>
  const request = Context.getUnsafe(context, HttpServerRequest.HttpServerRequest)
  const { params } = Context.getUnsafe(context, HttpRouter.RouteContext)
  return Effect.succeed(answer(request.headers, params.id))
})

/** The fixture's lookups as a service, as an app would reach them. */
class Records extends Context.Service<Records, { readonly answer: typeof answer }>()("bench/lean/Records") {
  static readonly layer = Layer.succeed(Records, Records.of({ answer }))
}

/** `gen`: the idiomatic generator handler. */
const generated = Effect.fnUntraced(function*(request: HttpServerRequest.HttpServerRequest) {
  const { id } = yield* HttpRouter.params
  const records = yield* Records
  return records.answer(request.headers, id)
})

const style = process.env.LEAN_STYLE ?? "direct"
const withMiddleware = process.env.LEAN_MIDDLEWARE === "1"

const Routes = style === "gen"
  ? HttpRouter.add("GET", "/data/:id", generated)
  : HttpRouter.add("GET", "/data/:id", direct)

// Records is the server's service (every request's fiber has it), not a per-request middleware's.
const Server = HttpRouter.serve(Routes, { disableLogger: !withMiddleware, disableListenLog: true }).pipe(
  Layer.provide(NodeHttpServer.layer(createServer, { port: portOf() })),
  Layer.provide(Records.layer)
)

const Ready = Layer.effectDiscard(Effect.sync(() => console.log("listening"))).pipe(Layer.provide(Server))

Layer.launch(Ready).pipe(
  Effect.provideService(References.MinimumLogLevel, "Warn"),
  NodeRuntime.runMain
)
