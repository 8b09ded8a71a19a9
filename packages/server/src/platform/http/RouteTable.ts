/**
 * The server's routes as templates, with their methods: for metric, log and
 * span labels (a template, never the raw path, keeps cardinality bounded) and
 * for answering a known path asked with another method (405 with `Allow`).
 */

const METHODS: Readonly<Record<string, ReadonlyArray<string>>> = {
  "/data": ["GET", "POST"],
  "/data/batch": ["POST"],
  "/data/{id}": ["GET"],
  "/streams": ["GET"],
  "/streams/{stream}/schema": ["GET", "PUT"],
  "/streams/{stream}/schema/versions": ["GET"],
  "/streams/{stream}/schema/versions/{version}": ["GET"],
  "/streams/{stream}/schema/check": ["POST"],
  "/admin/tenants": ["GET", "POST"],
  "/admin/tenants/{tenant}/keys": ["GET", "POST"],
  "/admin/keys/{id}/revoke": ["POST"],
  "/health/live": ["GET"],
  "/health/ready": ["GET"],
  "/openapi.json": ["GET"],
  "/docs": ["GET"],
  "/metrics": ["GET"]
}

/** Templates with parameters, most specific first. */
const TEMPLATES: ReadonlyArray<readonly [RegExp, string]> = [
  [/^\/streams\/[^/]+\/schema$/, "/streams/{stream}/schema"],
  [/^\/streams\/[^/]+\/schema\/versions$/, "/streams/{stream}/schema/versions"],
  [/^\/streams\/[^/]+\/schema\/versions\/[^/]+$/, "/streams/{stream}/schema/versions/{version}"],
  [/^\/streams\/[^/]+\/schema\/check$/, "/streams/{stream}/schema/check"],
  [/^\/admin\/tenants\/[^/]+\/keys$/, "/admin/tenants/{tenant}/keys"],
  [/^\/admin\/keys\/[^/]+\/revoke$/, "/admin/keys/{id}/revoke"]
]

/** The route template of a path: `/data/{id}` for any id, `other` for unknown paths. */
export const routeOf = (url: string): string => {
  const path = url.split("?", 1)[0]
  if (Object.hasOwn(METHODS, path)) return path
  // The hot path's template first, with no loop.
  if (path.startsWith("/data/")) return /^\/data\/[^/]+$/.test(path) ? "/data/{id}" : "other"
  for (const [pattern, template] of TEMPLATES) if (pattern.test(path)) return template
  return "other"
}

/** The methods a route answers (GET routes answer HEAD too); none for unknown paths. */
export const methodsOf = (route: string): ReadonlyArray<string> => {
  const methods = Object.hasOwn(METHODS, route) ? METHODS[route] : []
  return methods.includes("GET") ? [...methods, "HEAD"] : methods
}
