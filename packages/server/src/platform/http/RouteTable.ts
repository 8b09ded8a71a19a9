/**
 * The server's routes as templates, with their methods, derived from the
 * contract (`Api` in @strata/domain, through `HttpApi.reflect`) plus the three
 * routes served beside it. Used for metric, log and span labels (a template,
 * never the raw path, keeps cardinality bounded), for answering a known path
 * asked with another method (405 with `Allow`) and for knowing which requests
 * are the records routes that admission control sheds.
 */
import { Api } from "@strata/domain"
import { HttpApi } from "effect/http-api"

/** Served beside the contract: the OpenAPI document, its viewer and the Prometheus scrape. */
const BESIDE_THE_CONTRACT: ReadonlyArray<readonly [string, string]> = [
  ["/openapi.json", "GET"],
  ["/docs", "GET"],
  ["/metrics", "GET"]
]

const methods = new Map<string, Array<string>>()
const groups = new Map<string, string>()
HttpApi.reflect(Api, {
  onGroup: () => {},
  onEndpoint: ({ endpoint, group }) => {
    // The contract's `:id` is the template's `{id}`, as OpenAPI writes it.
    const template = endpoint.path.replace(/:(\w+)/g, "{$1}")
    methods.set(template, [...(methods.get(template) ?? []), endpoint.method])
    groups.set(template, group.identifier)
  }
})
for (const [template, method] of BESIDE_THE_CONTRACT) methods.set(template, [method])
// `Allow` lists them in the usual order, whatever order the contract declares them in.
const ORDER: Readonly<Record<string, number>> = { GET: 0, POST: 1, PUT: 2, PATCH: 3, DELETE: 4 }
for (const answered of methods.values()) answered.sort((a, b) => ORDER[a] - ORDER[b])

/** Templates with parameters as patterns, those with more literal segments first. */
const TEMPLATES: ReadonlyArray<readonly [RegExp, string]> = [...methods.keys()]
  .filter((template) => template.includes("{"))
  .map((template) => {
    const literals = template.split("/").filter((segment) => segment !== "" && !segment.startsWith("{")).length
    const pattern = new RegExp(`^${template.replace(/\{\w+\}/g, "[^/]+")}$`)
    return { pattern, template, literals }
  })
  .toSorted((a, b) => b.literals - a.literals)
  .map(({ pattern, template }) => [pattern, template] as const)

const RECORD_BY_ID = /^\/data\/[^/]+$/

/** The route template of a path: `/data/{id}` for any id, `other` for unknown paths. */
export const routeOf = (url: string): string => {
  const path = url.split("?", 1)[0]
  if (methods.has(path)) return path
  // The hot path's template first, with no loop.
  if (RECORD_BY_ID.test(path)) return "/data/{id}"
  for (const [pattern, template] of TEMPLATES) if (pattern.test(path)) return template
  return "other"
}

/** The methods a route answers (GET routes answer HEAD too); none for unknown paths. */
export const methodsOf = (route: string): ReadonlyArray<string> => {
  const answered = methods.get(route) ?? []
  return answered.includes("GET") ? [...answered, "HEAD"] : answered
}

/** The contract's group a route belongs to (`records`, `streams`, …); undefined for the others. */
export const groupOf = (route: string): string | undefined => groups.get(route)
