/**
 * The typed client against a live Strata server on a real socket
 * (in-memory Db, so the test needs no database).
 */
import { assert, describe, layer } from "@effect/vitest"
import { ApiKeys, AppConfig, layerServer, layerStorageMemory, withServices } from "@strata/server"
import { Effect, Layer } from "effect"
import { FetchHttpClient, HttpServer } from "effect/http"
import { make, StrataClient } from "../src/Client.ts"

const Services = withServices({ storage: layerStorageMemory }).pipe(
  Layer.provideMerge(AppConfig.layerWith({ port: 0, host: "127.0.0.1", accessLog: false }))
)

// As main serves it: the hot routes in front of the app.
const LiveServer = layerServer({ disableListenLog: true }).pipe(Layer.provideMerge(Services))

const ClientOnLiveServer = Layer.unwrap(Effect.gen(function*() {
  const server = yield* HttpServer.HttpServer
  const address = server.address
  if (address._tag === "UnixPathAddress") return yield* Effect.die("expected a TCP address")
  const keys = yield* ApiKeys
  yield* keys.createTenant("client")
  const { secret } = yield* keys.createKey({
    tenant: "client",
    scopes: ["records:read", "records:write", "schemas:write"]
  })
  return StrataClient.layer({ baseUrl: `http://127.0.0.1:${address.port}`, apiKey: secret })
})).pipe(Layer.provideMerge(LiveServer))

describe("@strata/client", () => {
  layer(ClientOnLiveServer, { excludeTestServices: true })("against a live server", (it) => {
    it.effect("round-trips a record: create, get by id, list", () =>
      Effect.gen(function*() {
        const client = yield* StrataClient
        const created = yield* client.records.create({
          headers: {},
          payload: { stream: "orders", key: "customer-42", data: { amount: 1250, currency: "EUR" } }
        })
        assert.strictEqual(created.stream, "orders")
        const fetched = yield* client.records.get({ params: { id: created.id }, headers: {} })
        assert.deepStrictEqual(fetched, created)
        const page = yield* client.records.list({ query: { stream: "orders" } })
        assert.deepStrictEqual(page.records.map((r) => r.id), [created.id])
      }))

    it.effect("pages with typed query values: limit as a number, from and to as Dates, cursors followed", () =>
      Effect.gen(function*() {
        const client = yield* StrataClient
        const at = (minute: number) => `2026-03-01T10:${String(minute).padStart(2, "0")}:00.000Z`
        for (let minute = 0; minute < 5; minute++) {
          yield* client.records.create({
            headers: {},
            payload: { stream: "paged", occurredAt: at(minute), data: { minute } }
          })
        }
        const query = { stream: "paged", order: "asc", limit: 2, from: new Date(at(1)), to: new Date(at(4)) } as const
        const first = yield* client.records.list({ query })
        assert.deepStrictEqual(first.records.map((r) => r.occurredAt), [at(1), at(2)])
        assert.isNotNull(first.nextCursor)
        const second = yield* client.records.list({ query: { ...query, cursor: first.nextCursor! } })
        assert.deepStrictEqual(second.records.map((r) => r.occurredAt), [at(3)])
        assert.isNull(second.nextCursor)
      }))

    it.effect("sends filters on data: one per path, or several on one path as an array", () =>
      Effect.gen(function*() {
        const client = yield* StrataClient
        for (const [customer, amount] of [[42, 50], [42, 150], [42, 900], [7, 150]] as const) {
          yield* client.records.create({ headers: {}, payload: { stream: "filtered", data: { customer, amount } } })
        }
        const amounts = (page: { readonly records: ReadonlyArray<{ readonly data: unknown }> }) =>
          page.records.map((r) => (r.data as { amount: number }).amount)
        const over100 = yield* client.records.list({
          query: { stream: "filtered", order: "asc", "data.customer": "eq.42", "data.amount": "gte.100" }
        })
        assert.deepStrictEqual(amounts(over100), [150, 900])
        const between = yield* client.records.list({
          query: { stream: "filtered", order: "asc", "data.customer": "eq.42", "data.amount": ["gte.100", "lt.500"] }
        })
        assert.deepStrictEqual(amounts(between), [150])
      }))

    it.effect("registers a schema and posts against it: a violation is the typed ValidationFailed", () =>
      Effect.gen(function*() {
        const client = yield* StrataClient
        const registered = yield* client.streams.register({
          params: { stream: "typed" },
          payload: { schema: { type: "object", properties: { n: { type: "integer" } }, required: ["n"] } }
        })
        assert.strictEqual(registered.version, 1)
        const current = yield* client.streams.current({ params: { stream: "typed" } })
        assert.deepStrictEqual(current, registered)
        const stored = yield* client.records.create({ headers: {}, payload: { stream: "typed", data: { n: 1 } } })
        assert.strictEqual(stored.schemaVersion, 1)
        const error = yield* client.records.create({ headers: {}, payload: { stream: "typed", data: { n: "1" } } })
          .pipe(Effect.flip)
        assert.strictEqual(error._tag, "ValidationFailed")
        if (error._tag === "ValidationFailed") {
          assert.deepStrictEqual(error.errors.map((e) => [e.path, e.keyword, e.schemaVersion]), [["data.n", "type", 1]])
        }
      }))

    it.effect("stores a batch and answers it in order", () =>
      Effect.gen(function*() {
        const client = yield* StrataClient
        const { records } = yield* client.records.createBatch({
          headers: {},
          payload: { records: [{ stream: "b", key: "1", data: {} }, { stream: "b", key: "2", data: {} }] }
        })
        assert.deepStrictEqual(records.map((r) => r.key), ["1", "2"])
      }))

    it.effect("surfaces a 404 as the typed NotFound problem", () =>
      Effect.gen(function*() {
        const client = yield* StrataClient
        const error = yield* client.records.get({
          params: { id: "019a5f0e-7c4b-7d1e-9a2f-3c4d5e6f7a8b" },
          headers: {}
        }).pipe(Effect.flip)
        assert.strictEqual(error._tag, "NotFound")
      }))

    it.effect("without a key, /data answers the typed Unauthorized problem", () =>
      Effect.gen(function*() {
        const server = yield* HttpServer.HttpServer
        const address = server.address as { readonly port: number }
        const anonymous = yield* make({ baseUrl: `http://127.0.0.1:${address.port}` })
        const error = yield* anonymous.records.list({ query: { stream: "orders" } }).pipe(Effect.flip)
        assert.strictEqual(error._tag, "Unauthorized")
      }).pipe(Effect.provide(FetchHttpClient.layer)))

    it.effect("reads readiness", () =>
      Effect.gen(function*() {
        const client = yield* StrataClient
        const ready = yield* client.health.ready()
        assert.strictEqual(ready.status, "up")
      }))
  })
})
