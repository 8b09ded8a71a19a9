/**
 * The metric names a PromQL expression reads. A small lexer, not a parser:
 * promtool checks the syntax; this only has to find the identifiers that are
 * neither functions, aggregations, keywords nor label names.
 */
const KEYWORDS = new Set([
  "and",
  "or",
  "unless",
  "bool",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "offset",
  "inf",
  "nan"
])

/** Grafana's variables replaced by values PromQL accepts. */
export const withGrafanaVariables = (expr: string): string =>
  expr.replaceAll("$__rate_interval", "5m").replaceAll("$__interval", "1m").replace(/\$\{?\w+\}?/g, ".*")

export const metricNames = (expr: string): Array<string> => {
  const stripped = withGrafanaVariables(expr)
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, "\"\"") // strings
    .replace(/\{[^}]*\}/g, " ") // label matchers
    .replace(/\[[^\]]*\]/g, " ") // ranges and subqueries
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ") // label lists
    .replace(/\boffset\s+\w+/g, " ")
    .replace(/(?<![\w:])\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w:])/gi, " ") // numbers
  const names = new Set<string>()
  for (const match of stripped.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const rest = stripped.slice(match.index + match[0].length)
    if (/^\s*\(/.test(rest)) continue // a function or an aggregation
    if (KEYWORDS.has(match[0].toLowerCase())) continue
    names.add(match[0])
  }
  return [...names]
}

/** `label_values(selector, label)` of a Grafana variable: the selector, which is PromQL. */
export const labelValuesSelector = (query: string): string | undefined =>
  /^label_values\((.*),\s*\w+\)$/.exec(query.trim())?.[1]
