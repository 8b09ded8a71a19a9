/**
 * A record's answer to `GET /data/{id}` (README: The API), on both request
 * paths: records never change, so the id is a strong ETag and the answer may
 * be kept forever; `Cache-Status` (RFC 9211) says whether the cache answered;
 * an `If-None-Match` that names the record gets a 304.
 */
import type { Answer } from "../platform/http/Answer.ts"
import type { CacheOutcome } from "./RecordCache.ts"

export const RECORD_CACHE_CONTROL = "private, max-age=31536000, immutable"

/** RFC 9110 If-None-Match: `*` or a list of entity tags (weak comparison). */
export const matchesEtag = (header: string, etag: string): boolean =>
  header.trim() === "*" || header.split(",").some((tag) => tag.trim().replace(/^W\//, "") === etag)

/** The answer of the record `id`, whose JSON text is `text`, found through `cache`. */
export const recordAnswer = (
  id: string,
  text: string,
  cache: CacheOutcome,
  ifNoneMatch: string | undefined
): Answer => {
  const etag = `"${id}"`
  const headers: Record<string, string> = {
    etag,
    "cache-control": RECORD_CACHE_CONTROL,
    "cache-status": cache === "hit" ? "strata; hit" : "strata; fwd=miss"
  }
  return ifNoneMatch !== undefined && matchesEtag(ifNoneMatch, etag)
    ? { status: 304, headers, body: undefined }
    : { status: 200, headers, body: text }
}
