/**
 * Typed readers for the API's JSON answers: each reads a response's body as the
 * shape the contract (`@strata/domain`) gives it on the wire, i.e. its encoded
 * form (instants as strings). They check nothing, so a test asserts exactly what
 * it means to; a problem answer is checked with `expectProblem`, or read with
 * `problemOf` where a test looks at its fields alone.
 */
import type {
  ApiKeyView,
  CreatedKey,
  Readiness,
  RecordList,
  RecordPage,
  SchemaCheck,
  StoredRecord,
  StreamList,
  StreamSchema,
  StreamSchemaVersions,
  Tenant,
  TenantList
} from "@strata/domain"
import type { Problem } from "./Problems.ts"

/** A stored record: `POST /data`, `GET /data/{id}`. */
export type RecordBody = typeof StoredRecord.Encoded
/** A page of `GET /data`. */
export type PageBody = typeof RecordPage.Encoded
/** The stored records of `POST /data/batch`, in input order. */
export type BatchBody = typeof RecordList.Encoded
/** One version of a stream's schema: `PUT /streams/{stream}/schema`, `GET …/schema`, `GET …/versions/{version}`. */
export type StreamSchemaBody = typeof StreamSchema.Encoded
/** `GET /streams/{stream}/schema/versions`. */
export type SchemaVersionsBody = typeof StreamSchemaVersions.Encoded
/** `GET /streams`. */
export type StreamListBody = typeof StreamList.Encoded
/** `POST /streams/{stream}/schema/check`. */
export type SchemaCheckBody = typeof SchemaCheck.Encoded
/** `POST /admin/tenants`. */
export type TenantBody = typeof Tenant.Encoded
/** `GET /admin/tenants`. */
export type TenantListBody = typeof TenantList.Encoded
/** An API key without its secret: `POST /admin/keys/{id}/revoke`. */
export type ApiKeyBody = typeof ApiKeyView.Encoded
/** `POST /admin/tenants/{tenant}/keys`: the key and, this once, its secret. */
export type CreatedKeyBody = typeof CreatedKey.Encoded
/** `GET /health/ready`. */
export type ReadinessBody = typeof Readiness.Encoded

/** The one cast: a reader that takes the body to be an `A`. */
const reader = <A>() => async (res: Response): Promise<A> => (await res.json()) as A

export const recordOf = reader<RecordBody>()
export const pageOf = reader<PageBody>()
export const batchOf = reader<BatchBody>()
export const streamSchemaOf = reader<StreamSchemaBody>()
export const schemaVersionsOf = reader<SchemaVersionsBody>()
export const streamListOf = reader<StreamListBody>()
export const schemaCheckOf = reader<SchemaCheckBody>()
export const tenantOf = reader<TenantBody>()
export const tenantListOf = reader<TenantListBody>()
export const apiKeyOf = reader<ApiKeyBody>()
export const createdKeyOf = reader<CreatedKeyBody>()
export const readinessOf = reader<ReadinessBody>()
/** A problem document, read without `expectProblem`'s checks. */
export const problemOf = reader<Problem>()
