/**
 * The stream schema routes (README: Schemas). Answers are written by hand, as records
 * are, so a schema's numbers come back digit for digit and in one key order.
 */
import { Api, CheckSchema, DeclareIndexes, NotFound, Principal, RegisterSchema } from "@strata/domain"
import { Effect, Option } from "effect"
import { HttpServerResponse } from "effect/http"
import { HttpApiBuilder } from "effect/http-api"
import { HttpConfig } from "../platform/config/HttpConfig.ts"
import { readJsonBody } from "../platform/http/JsonBody.ts"
import { unavailableOnTransient } from "../platform/http/Problems.ts"
import { decodeAll } from "../platform/http/Validation.ts"
import { jsonText } from "../platform/json/ExactJson.ts"
import { SchemaRegistry, type SchemaVersion } from "./SchemaRegistry.ts"
import { type DeclaredIndex, StreamIndexes } from "./StreamIndexes.ts"
import { StreamSchemas } from "./StreamSchemas.ts"

const versionText = (v: SchemaVersion) =>
  `{"stream":${JSON.stringify(v.stream)},"version":${v.version},"schema":${jsonText(v.schema)},"compatibility":${
    JSON.stringify(v.compatibility)
  },"createdAt":${JSON.stringify(v.createdAt.toISOString())}}`

const json = (text: string, status = 200) => HttpServerResponse.text(text, { status, contentType: "application/json" })

const indexesText = (stream: string, indexes: ReadonlyArray<DeclaredIndex>) =>
  JSON.stringify({
    stream,
    indexes: indexes.map((i) => ({
      path: i.path.join("."),
      kind: i.kind,
      state: i.state,
      built: i.built,
      partitions: i.partitions
    }))
  })

const noSchema = (stream: string) => new NotFound({ detail: `Stream ${stream} has no schema` })

export const StreamsHandlers = HttpApiBuilder.group(
  Api,
  "streams",
  Effect.fn(function*(handlers) {
    const registry = yield* SchemaRegistry
    const schemas = yield* StreamSchemas
    const config = yield* HttpConfig
    const decodeRegister = decodeAll(RegisterSchema)
    const decodeCheck = decodeAll(CheckSchema)
    const decodeIndexes = decodeAll(DeclareIndexes)
    const indexes = yield* StreamIndexes

    return handlers
      .handleRaw("register", ({ params, request }) =>
        Effect.gen(function*() {
          const body = yield* decodeRegister(yield* readJsonBody(request, config.maxBodyBytes))
          const tenant = (yield* Principal).tenant
          const { created, version } = yield* schemas.register(
            tenant,
            params.stream,
            body.schema,
            body.compatibility ?? "none"
          )
          return json(versionText(version), created ? 201 : 200)
        }).pipe(Effect.catchTag("DbError", unavailableOnTransient)))
      .handleRaw("check", ({ params, request }) =>
        Effect.gen(function*() {
          const body = yield* decodeCheck(yield* readJsonBody(request, config.maxBodyBytes))
          const result = yield* schemas.check((yield* Principal).tenant, params.stream, body.schema)
          return json(JSON.stringify(result))
        }).pipe(Effect.catchTag("DbError", unavailableOnTransient)))
      .handle("current", ({ params }) =>
        Effect.gen(function*() {
          const found = yield* registry.current((yield* Principal).tenant, params.stream)
          if (Option.isNone(found)) return yield* noSchema(params.stream)
          return json(versionText(found.value))
        }).pipe(Effect.catchTag("DbError", unavailableOnTransient)))
      .handle("versions", ({ params }) =>
        Effect.gen(function*() {
          const versions = yield* registry.versions((yield* Principal).tenant, params.stream)
          if (versions.length === 0) return yield* noSchema(params.stream)
          return json(`{"versions":[${versions.map(versionText).join(",")}]}`)
        }).pipe(Effect.catchTag("DbError", unavailableOnTransient)))
      .handle("version", ({ params }) =>
        Effect.gen(function*() {
          const found = yield* registry.version((yield* Principal).tenant, params.stream, Number(params.version))
          if (Option.isNone(found)) {
            return yield* new NotFound({ detail: `Stream ${params.stream} has no schema version ${params.version}` })
          }
          return json(versionText(found.value))
        }).pipe(Effect.catchTag("DbError", unavailableOnTransient)))
      .handleRaw("declareIndexes", ({ params, request }) =>
        Effect.gen(function*() {
          const body = yield* decodeIndexes(yield* readJsonBody(request, config.maxBodyBytes))
          const wanted = new Map(body.indexes.map((i) => {
            const spec = { path: i.path.split("."), kind: i.kind ?? "btree" as const }
            return [JSON.stringify(spec), spec]
          }))
          const declared = yield* indexes.declare((yield* Principal).tenant, params.stream, Array.from(wanted.values()))
          return json(indexesText(params.stream, declared))
        }).pipe(Effect.catchTag("DbError", unavailableOnTransient)))
      .handle("indexes", ({ params }) =>
        Effect.gen(function*() {
          const declared = yield* indexes.list((yield* Principal).tenant, params.stream)
          return json(indexesText(params.stream, declared))
        }).pipe(Effect.catchTag("DbError", unavailableOnTransient)))
      .handle("list", () =>
        Effect.gen(function*() {
          const streams = yield* registry.streams((yield* Principal).tenant)
          return json(JSON.stringify({
            streams: streams.map((s) => ({
              stream: s.stream,
              version: s.version,
              createdAt: s.createdAt.toISOString()
            }))
          }))
        }).pipe(Effect.catchTag("DbError", unavailableOnTransient)))
  })
)
