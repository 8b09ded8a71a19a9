/**
 * Traces (README: Operations): OpenTelemetry spans over OTLP/HTTP when
 * OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set,
 * through Effect's own OTLP exporter (no OpenTelemetry SDK). Without an
 * endpoint, tracing is switched off altogether: every span is a no-op placeholder,
 * nothing is recorded or exported.
 */
import { Context, Effect, Layer, Option, Redacted, References, Tracer } from "effect"
import { FetchHttpClient, HttpMiddleware, HttpServerRequest, HttpTraceContext } from "effect/http"
import { OtlpExporter, OtlpSerialization, OtlpTracer } from "effect/observability"
import { TelemetryConfig, type TelemetrySettings } from "../config/TelemetryConfig.ts"
import { routeOf } from "../http/RouteTable.ts"

/**
 * A parent-based ratio sampler around `tracer`. Effect's tracer has no sampler
 * of its own: a span is sampled unless its parent is not (or its level is below
 * MinimumTraceLevel), so every root would be exported. This decides at the
 * roots instead: a root span is sampled with probability `ratio`, and children
 * follow their parent, local or remote (an incoming `traceparent`), because
 * Effect already marks the children of an unsampled span unsampled. A root that
 * links to a sampled span (the shared group commit of sampled requests, the
 * publishing of their events) is sampled too, so a sampled request's trace
 * leads to its commit and its event.
 */
export const parentBasedRatio = (ratio: number) => (tracer: Tracer.Tracer): Tracer.Tracer =>
  Tracer.make({
    span: (options) =>
      tracer.span(
        Option.isSome(options.parent) || !options.sampled
          ? options
          : { ...options, sampled: options.links.some((link) => link.span.sampled) || Math.random() < ratio }
      ),
    ...(tracer.context !== undefined ? { context: tracer.context } : {})
  })

/** The ratio of root spans to sample under OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG. */
export const samplingRatio = (config: Pick<TelemetrySettings, "tracesSampler" | "tracesSamplerArg">): number =>
  config.tracesSampler === "parentbased_always_on"
    ? 1
    : config.tracesSampler === "parentbased_always_off"
    ? 0
    : config.tracesSamplerArg

/** Where spans go: the traces endpoint as given, or `/v1/traces` below the base endpoint (OTLP spec). */
export const tracesUrl = (
  config: Pick<TelemetrySettings, "otlpEndpoint" | "otlpTracesEndpoint">
): Option.Option<string> =>
  Option.orElse(
    config.otlpTracesEndpoint,
    () => Option.map(config.otlpEndpoint, (base) => `${base.replace(/\/+$/, "")}/v1/traces`)
  )

/** `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs, comma-separated, values percent-encoded. */
const parseHeaders = (text: string): Record<string, string> => {
  const headers: Record<string, string> = {}
  for (const pair of text.split(",")) {
    const at = pair.indexOf("=")
    if (at <= 0) continue
    headers[pair.slice(0, at).trim().toLowerCase()] = decodeURIComponent(pair.slice(at + 1).trim())
  }
  return headers
}

/** The tracer for the configuration: an OTLP exporter behind the sampler, or tracing off. */
export const layerTracing: Layer.Layer<never, never, TelemetryConfig> = Layer.unwrap(Effect.gen(function*() {
  const config = yield* TelemetryConfig
  const url = tracesUrl(config)
  if (Option.isNone(url)) return Layer.succeed(References.TracerEnabled, false)
  const tracer = Layer.effect(
    Tracer.Tracer,
    Effect.map(
      OtlpTracer.make({
        url: url.value,
        resource: { serviceName: config.serviceName },
        headers: parseHeaders(Redacted.value(config.otlpHeaders)),
        exportInterval: "1 second"
      }),
      parentBasedRatio(samplingRatio(config))
    )
  )
  return Layer.mergeAll(
    tracer.pipe(
      Layer.provide(Layer.mergeAll(
        OtlpExporter.layerFlusher,
        FetchHttpClient.layer,
        config.otlpProtocol === "http/json" ? OtlpSerialization.layerJson : OtlpSerialization.layerProtobuf
      ))
    ),
    // Server spans are named like OpenTelemetry's HTTP conventions: `GET /data/{id}`.
    Layer.succeed(HttpMiddleware.SpanNameGenerator, (request) => `${request.method} ${routeOf(request.url)}`),
    // Probes and scrapes every few seconds would only add noise.
    Layer.succeed(HttpMiddleware.TracerDisabledWhen, (request) => UNTRACED.has(routeOf(request.url)))
  )
}))

const UNTRACED: ReadonlySet<string> = new Set(["/health/live", "/health/ready", "/metrics"])

/**
 * With tracing off, the caller's `traceparent` still identifies the request in
 * logs and in the events it causes: it becomes the parent span of the request
 * (a remote span, nothing is recorded). With tracing on, the server span has
 * already taken it as its parent.
 */
export const withTraceContext = <A, E, R>(app: Effect.Effect<A, E, R>) =>
  Effect.withFiber<A, E, R>((fiber) => {
    if (fiber.getRef(References.TracerEnabled)) return app
    const request = Context.getUnsafe(fiber.context, HttpServerRequest.HttpServerRequest)
    return Option.match(HttpTraceContext.fromHeaders(request.headers), {
      onNone: () => app,
      onSome: (caller) => Effect.withParentSpan(app, caller)
    })
  })

/**
 * The W3C `traceparent` of the current span, when there is one that tracing
 * made (or that came from the caller, see `withTraceContext`).
 */
export const currentTraceparent: Effect.Effect<string | null> = Effect.map(
  Effect.option(Effect.currentParentSpan),
  (span) =>
    Option.match(Option.flatMap(span, recordedSpan), {
      onNone: () => null,
      onSome: traceparentOf
    })
)

/** A span as a W3C `traceparent` header value. */
export const traceparentOf = (span: Tracer.AnySpan): string =>
  `00-${span.traceId.padStart(32, "0")}-${span.spanId}-${span.sampled ? "01" : "00"}`

/**
 * The nearest span that is not a no-op: with tracing off, spans are shared
 * placeholders marked with `DisablePropagation`, and only an external parent
 * (the caller's `traceparent`) carries real ids.
 */
export const recordedSpan = (span: Tracer.AnySpan): Option.Option<Tracer.AnySpan> => {
  let current: Tracer.AnySpan | undefined = span
  while (current !== undefined && Context.get(current.annotations, Tracer.DisablePropagation)) {
    current = current._tag === "Span" ? Option.getOrUndefined(current.parent) : undefined
  }
  return Option.fromNullishOr(current)
}

/**
 * Links from a span that serves many requests at once (a group commit, a batch of
 * reads) to the sampled spans of those requests, at most 128: a trace viewer leads
 * from each request to the work it shared.
 */
export const linksTo = (
  served: ReadonlyArray<{ readonly span: Tracer.AnySpan | undefined }>
): Array<Tracer.SpanLink> => {
  const links: Array<Tracer.SpanLink> = []
  for (const { span } of served) {
    if (span !== undefined && span.sampled && links.length < 128) links.push({ span, attributes: {} })
  }
  return links
}
