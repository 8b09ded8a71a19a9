/**
 * Stream schemas (README: Schemas): per tenant and stream, a JSON Schema (draft
 * 2020-12) for `data`, with immutable versions numbered 1, 2, 3…
 */
import { Schema } from "effect"
import { FieldError } from "./Problems.ts"
import { IsoDateTime } from "./Record.ts"

export const Compatibility = Schema.Literals(["none", "backward"]).annotate({
  description:
    "`backward`: refuse the new version (409) when the stream's recent records fail it. `none`: no such check."
})
export type Compatibility = typeof Compatibility.Type

export const JsonSchemaDocument = Schema.JsonObject.annotate({
  description:
    "A JSON Schema, draft 2020-12, for `data`: at most MAX_SCHEMA_BYTES, 32 levels deep, only local `$ref`s, no `$data`, only known keywords, patterns a linear-time engine runs."
})

/** The body of `PUT /streams/{stream}/schema`. */
export const RegisterSchema = Schema.Struct({
  schema: JsonSchemaDocument,
  compatibility: Schema.optionalKey(Compatibility)
}).annotate({ identifier: "RegisterSchema" })
export type RegisterSchema = typeof RegisterSchema.Type

/** One version of a stream's schema. */
export const StreamSchema = Schema.Struct({
  stream: Schema.String,
  version: Schema.Int,
  schema: Schema.JsonObject,
  compatibility: Compatibility,
  createdAt: IsoDateTime
}).annotate({ identifier: "StreamSchema" })
export type StreamSchema = typeof StreamSchema.Type

export const StreamSchemaVersions = Schema.Struct({
  versions: Schema.Array(StreamSchema)
}).annotate({ identifier: "StreamSchemaVersions" })

export const StreamSummary = Schema.Struct({
  stream: Schema.String,
  version: Schema.Int,
  createdAt: IsoDateTime
}).annotate({ identifier: "StreamSummary", description: "A stream with a schema, and its current version." })

export const StreamList = Schema.Struct({
  streams: Schema.Array(StreamSummary)
}).annotate({ identifier: "StreamList" })

/** The body of `POST /streams/{stream}/schema/check`. */
export const CheckSchema = Schema.Struct({
  schema: JsonSchemaDocument
}).annotate({ identifier: "CheckSchema" })

/** How a candidate schema fares against the stream's most recent records. */
export const SchemaCheck = Schema.Struct({
  checked: Schema.Int,
  passed: Schema.Int,
  failed: Schema.Int,
  /** The first failures (at most 100), each with the failing record's `recordId` and a path such as `data.amount`. */
  errors: Schema.Array(FieldError)
}).annotate({ identifier: "SchemaCheck" })
export type SchemaCheck = typeof SchemaCheck.Type

/** A declared index (README: Declared indexes): a path of `data` and the kind of index. */
export const IndexDeclaration = Schema.Struct({
  path: Schema.String.check(
    Schema.isPattern(/^[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63}){0,7}$/, {
      message: "must be 1 to 8 names of letters, digits, _ or -, separated by dots"
    })
  ).annotate({ description: "The path as filters write it after data., e.g. customer.id." }),
  kind: Schema.optionalKey(
    Schema.Literals(["btree", "gin"]).annotate({
      description:
        "btree (default) serves eq, neq, gt, gte, lt, lte, in and is.null; gin (jsonb_path_ops) serves contains only."
    })
  )
}).annotate({ identifier: "IndexDeclaration" })

/** The body of `PUT /streams/{stream}/indexes`: the stream's whole declared set. */
export const DeclareIndexes = Schema.Struct({
  indexes: Schema.Array(IndexDeclaration).check(Schema.isMaxLength(8))
}).annotate({ identifier: "DeclareIndexes" })
export type DeclareIndexes = typeof DeclareIndexes.Type

export const StreamIndex = Schema.Struct({
  path: Schema.String,
  kind: Schema.Literals(["btree", "gin"]),
  state: Schema.Literals(["building", "ready", "failed"]),
  built: Schema.Int.annotate({ description: "Partitions whose index is built and attached." }),
  partitions: Schema.Int
}).annotate({ identifier: "StreamIndex" })

export const StreamIndexList = Schema.Struct({
  stream: Schema.String,
  indexes: Schema.Array(StreamIndex)
}).annotate({ identifier: "StreamIndexList" })
