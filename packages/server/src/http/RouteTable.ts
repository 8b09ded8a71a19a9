/**
 * The server's routes as templates, with their methods: for metric, log and
 * span labels (a template, never the raw path, keeps cardinality bounded) and
 * for answering a known path asked with another method (405 with `Allow`).
 */

const METHODS: Readonly<Record<string, ReadonlyArray<string>>> = {
  "/data": ["GET", "POST"],
  "/data/batch": ["POST"],
  "/data/{id}": ["GET"],
  "/health/live": ["GET"],
  "/health/ready": ["GET"],
  "/openapi.json": ["GET"],
  "/docs": ["GET"],
  "/metrics": ["GET"]
}

/** The route template of a path: `/data/{id}` for any id, `other` for unknown paths. */
export const routeOf = (url: string): string => {
  const path = url.split("?", 1)[0]
  if (Object.hasOwn(METHODS, path)) return path
  if (/^\/data\/[^/]+$/.test(path)) return "/data/{id}"
  return "other"
}

/** The methods a route answers (GET routes answer HEAD too); none for unknown paths. */
export const methodsOf = (route: string): ReadonlyArray<string> => {
  const methods = Object.hasOwn(METHODS, route) ? METHODS[route] : []
  return methods.includes("GET") ? [...methods, "HEAD"] : methods
}
