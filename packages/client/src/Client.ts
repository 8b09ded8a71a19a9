/**
 * A typed Strata client derived from the same contract the server implements:
 * every route, payload, success and problem type comes from `@strata/domain`.
 * Give it an API key (`pnpm strata keys create …`) for the `/data` routes.
 */
import { Api } from "@strata/domain"
import { Context, Layer, Redacted } from "effect"
import { FetchHttpClient, HttpClient, HttpClientRequest } from "effect/http"
import { HttpApiClient } from "effect/http-api"

export type StrataApi = HttpApiClient.ForApi<typeof Api>

export interface ClientOptions {
  /** e.g. `http://localhost:8080` */
  readonly baseUrl: string
  /** Sent as `Authorization: Bearer …` on every request. */
  readonly apiKey?: string | Redacted.Redacted | undefined
}

/** Builds a client for the Strata server at `options.baseUrl`. */
export const make = (options: ClientOptions) => {
  const key = options.apiKey
  return HttpApiClient.make(Api, {
    baseUrl: options.baseUrl,
    transformClient: key === undefined
      ? undefined
      : HttpClient.mapRequest(HttpClientRequest.bearerToken(Redacted.isRedacted(key) ? Redacted.value(key) : key))
  })
}

export class StrataClient extends Context.Service<StrataClient, StrataApi>()("@strata/client/StrataClient") {
  /** The client over `fetch`. */
  static readonly layer = (options: ClientOptions): Layer.Layer<StrataClient> =>
    Layer.effect(StrataClient, make(options)).pipe(Layer.provide(FetchHttpClient.layer))

  /** The client over an HttpClient you provide (retries, proxies, tests). */
  static readonly layerWith = (options: ClientOptions): Layer.Layer<StrataClient, never, HttpClient.HttpClient> =>
    Layer.effect(StrataClient, make(options))
}
