/**
 * A typed Strata client derived from the same contract the server implements:
 * every route, payload, success and problem type comes from `@strata/domain`.
 */
import { Api } from "@strata/domain"
import { Context, Layer } from "effect"
import { FetchHttpClient, HttpClient } from "effect/http"
import { HttpApiClient } from "effect/http-api"

export type StrataApi = HttpApiClient.ForApi<typeof Api>

/** Builds a client for the Strata server at `baseUrl` (e.g. `http://localhost:8080`). */
export const make = (baseUrl: string) => HttpApiClient.make(Api, { baseUrl })

export class StrataClient extends Context.Service<StrataClient, StrataApi>()("@strata/client/StrataClient") {
  /** The client over `fetch`. */
  static readonly layer = (baseUrl: string): Layer.Layer<StrataClient> =>
    Layer.effect(StrataClient, make(baseUrl)).pipe(Layer.provide(FetchHttpClient.layer))

  /** The client over an HttpClient you provide (retries, proxies, tests). */
  static readonly layerWith = (baseUrl: string): Layer.Layer<StrataClient, never, HttpClient.HttpClient> =>
    Layer.effect(StrataClient, make(baseUrl))
}
