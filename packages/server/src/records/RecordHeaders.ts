/**
 * The headers of a record's answer (README: The API): records never change, so the id
 * is a strong ETag and the answer may be kept forever; `Cache-Status` (RFC 9211)
 * says whether the cache answered.
 */

export const RECORD_CACHE_CONTROL = "private, max-age=31536000, immutable"

export const cacheStatusOf = (cache: "hit" | "miss" | "unavailable") =>
  cache === "hit" ? "strata; hit" : "strata; fwd=miss"

export const recordHeaders = (id: string, cache: "hit" | "miss" | "unavailable") => ({
  etag: `"${id}"`,
  "cache-control": RECORD_CACHE_CONTROL,
  "cache-status": cacheStatusOf(cache)
})

/** RFC 9110 If-None-Match: `*` or a list of entity tags (weak comparison). */
export const matchesEtag = (header: string, etag: string): boolean =>
  header.trim() === "*" || header.split(",").some((tag) => tag.trim().replace(/^W\//, "") === etag)
