/**
 * The alert rules and the Grafana dashboard: promtool checks and unit-tests the
 * rules and the compose Prometheus config, every dashboard query is valid
 * PromQL, and no rule or panel reads a metric that the server's /metrics does
 * not serve (the app runs in process on PostgreSQL and Redis to say which).
 */
import { beforeAll, describe, expect, it } from "@effect/vitest"
import { postgresAvailable, redisAvailable } from "@strata/testing"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parse, stringify } from "yaml"
import { labelValuesSelector, metricNames, withGrafanaVariables } from "./support/PromQL.ts"
import { path, read, readYaml, run, tool } from "./support/Repo.ts"
import { servedMetricNames } from "./support/ServedMetrics.ts"

const RULES = "deploy/observability/prometheus/rules/strata.rules.yaml"
const DASHBOARD = "deploy/observability/grafana/dashboards/strata.json"

interface Rule {
  readonly record?: string
  readonly alert?: string
  readonly expr: string
  readonly for?: string
  readonly labels?: Record<string, string>
}
const rules = (): Array<Rule> =>
  (readYaml(RULES).groups as Array<{ rules: Array<Rule> }>).flatMap((group) => group.rules)

interface Panel {
  readonly id: number
  readonly type: string
  readonly title: string
  readonly datasource?: { uid: string }
  readonly gridPos: { h: number; w: number; x: number; y: number }
  readonly targets?: Array<{ expr: string; refId: string; datasource?: { uid: string } }>
}
const dashboard = () =>
  JSON.parse(read(DASHBOARD)) as { uid: string; title: string; panels: Array<Panel>; templating: any }
/** Every PromQL expression of the dashboard: panel targets and variable queries. */
const dashboardQueries = (): Array<{ where: string; expr: string }> => {
  const { panels, templating } = dashboard()
  const targets = panels.flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({ where: `panel "${panel.title}" ${target.refId}`, expr: target.expr }))
  )
  const variables = (templating.list as Array<{ name: string; query: { query: string } }>).map((variable) => {
    const selector = labelValuesSelector(variable.query.query)
    if (selector === undefined) throw new Error(`variable ${variable.name}: only label_values(…) is checked`)
    return { where: `variable ${variable.name}`, expr: selector }
  })
  return [...targets, ...variables]
}

const promtool = tool("promtool", "the promtool checks of the alert rules (apt-get install prometheus)")
const promtoolIt = promtool === undefined ? it.skip : it

describe("Prometheus rules (promtool)", () => {
  promtoolIt("pass promtool check rules", () => {
    const result = run("promtool", ["check", "rules", RULES])
    expect(result.output).toContain("SUCCESS")
    expect(result.status, result.output).toBe(0)
  })

  promtoolIt("pass their unit tests: every alert fires when it should and stays quiet when it should not", () => {
    const dir = path("deploy/observability/prometheus/rules")
    const result = run("promtool", ["test", "rules", "strata.rules.test.yaml", "strata.rules.day-test.yaml"], {
      cwd: dir
    })
    expect(result.status, result.output).toBe(0)
    // Each alert appears in a firing case and in a quiet one.
    const tests = [read(RULES.replace(".yaml", ".test.yaml")), read(RULES.replace(".yaml", ".day-test.yaml"))]
      .flatMap((text) => readYamlTests(text))
    for (const alert of rules().filter((r) => r.alert !== undefined).map((r) => r.alert!)) {
      const cases = tests.filter((t) => t.alertname === alert)
      expect(cases.some((c) => (c.exp_alerts ?? []).length > 0), `${alert} is never shown firing`).toBe(true)
      expect(cases.some((c) => (c.exp_alerts ?? []).length === 0), `${alert} is never shown quiet`).toBe(true)
    }
  })

  promtoolIt("the compose stack's Prometheus config passes promtool check config, with its rule files", () => {
    const result = run("promtool", ["check", "config", "deploy/observability/prometheus/prometheus.yml"])
    expect(result.status, result.output).toBe(0)
    expect(result.output).toContain("rules found")
  })

  it("label every alert with a severity the routing knows, and give each a summary", () => {
    for (const rule of rules().filter((r) => r.alert !== undefined)) {
      expect(["page", "ticket", "warning"], rule.alert).toContain(rule.labels?.severity)
      expect((rule as any).annotations?.summary, rule.alert).toBeTruthy()
    }
  })

  it("tie the memory-growth alert to the container's memory limit", () => {
    const memory = rules().find((r) => r.alert === "StrataMemoryGrowth")!
    const limitMiB = Number(/0\.9 \* (\d+) \* 1024 \* 1024/.exec(memory.expr)?.[1])
    const deployment = readYaml("deploy/k8s/base/deployment.yaml")
    expect(deployment.spec.template.spec.containers[0].resources.limits.memory).toBe(`${limitMiB}Mi`)
    const compose = readYaml("deploy/compose.yaml")
    expect(compose.services.strata.deploy.resources.limits.memory).toBe(`${limitMiB}M`)
  })
})

const readYamlTests = (text: string): Array<{ alertname?: string; exp_alerts?: Array<unknown> }> =>
  (parse(text).tests as Array<{ alert_rule_test?: Array<any> }>).flatMap((t) => t.alert_rule_test ?? [])

describe("the Grafana dashboard", () => {
  it("is provisioned in compose with the data source its panels name", () => {
    const { uid, panels } = dashboard()
    expect(uid).toBe("strata")
    const sources = readYaml("deploy/observability/grafana/provisioning/datasources/datasources.yaml")
      .datasources as Array<
        { uid: string; type: string }
      >
    const prometheus = sources.filter((s) => s.type === "prometheus").map((s) => s.uid)
    for (const panel of panels.filter((p) => p.type !== "row")) {
      expect(prometheus, panel.title).toContain(panel.datasource?.uid)
      for (const target of panel.targets ?? []) expect(prometheus, panel.title).toContain(target.datasource?.uid)
      expect((panel.targets ?? []).length, panel.title).toBeGreaterThan(0)
    }
    const provider = readYaml("deploy/observability/grafana/provisioning/dashboards/dashboards.yaml").providers[0]
    const compose = readYaml("deploy/compose.yaml")
    expect(compose.services.grafana.volumes).toContain(`./observability/grafana/dashboards:${provider.options.path}:ro`)
  })

  it("has unique panel ids and a layout on Grafana's 24-column grid without overlaps", () => {
    const { panels } = dashboard()
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length)
    const cells = new Set<string>()
    for (const { gridPos, title } of panels) {
      expect(gridPos.x + gridPos.w, title).toBeLessThanOrEqual(24)
      for (let x = gridPos.x; x < gridPos.x + gridPos.w; x++) {
        for (let y = gridPos.y; y < gridPos.y + gridPos.h; y++) {
          expect(cells.has(`${x},${y}`), `${title} overlaps at ${x},${y}`).toBe(false)
          cells.add(`${x},${y}`)
        }
      }
    }
  })

  it("shows what the issue asks for: RED per route, P50/P99 against 500 ms, cache, outbox, breakers, pool, event loop, memory", () => {
    const exprs = dashboardQueries().map((q) => q.expr).join("\n")
    for (
      const needle of [
        "sum by (route) (rate(http_server_request_duration_seconds_count",
        "histogram_quantile(0.99, sum by (route, le)",
        "histogram_quantile(0.5, sum by (route, le)",
        "strata_cache_requests_total{job=\"strata\", instance=~\"$instance\", outcome=\"hit\"}",
        "strata_outbox_events",
        "strata_outbox_oldest_event_age_seconds",
        "strata_circuit_breaker_state",
        "strata_db_pool_connections",
        "nodejs_eventloop_delay_p99_seconds",
        "process_resident_memory_bytes"
      ]
    ) expect(exprs).toContain(needle)
    const p99 = dashboard().panels.find((p) => p.title.startsWith("P99 latency"))! as any
    expect(p99.fieldConfig.defaults.thresholds.steps.map((s: { value: number | null }) => s.value)).toContain(0.5)
  })

  promtoolIt("holds only valid PromQL (each query checked by promtool as a recording rule)", () => {
    const queries = dashboardQueries()
    const dir = mkdtempSync(join(tmpdir(), "strata-dashboard-"))
    const file = join(dir, "dashboard.rules.yaml")
    writeFileSync(
      file,
      stringify({
        groups: [{
          name: "dashboard",
          rules: queries.map((q, i) => ({ record: `dashboard:query_${i}`, expr: withGrafanaVariables(q.expr) }))
        }]
      })
    )
    const result = run("promtool", ["check", "rules", file])
    rmSync(dir, { recursive: true })
    expect(result.status, result.output).toBe(0)
  })
})

const available = (await postgresAvailable()) && (await redisAvailable())

describe.skipIf(!available)("metric names in rules and dashboards", () => {
  let served: ReadonlySet<string>
  beforeAll(async () => {
    served = await servedMetricNames()
  })
  const recorded = () => new Set(rules().flatMap((r) => r.record === undefined ? [] : [r.record]))

  it("the server serves what this test expects to find (a sanity check of the scrape)", () => {
    for (
      const name of ["http_server_request_duration_seconds_bucket", "strata_outbox_events", "nodejs_heap_used_bytes"]
    ) {
      expect([...served]).toContain(name)
    }
  })

  it("every rule reads only metrics /metrics serves, or the rules' own recordings", () => {
    const unknown = rules().flatMap((rule) =>
      metricNames(rule.expr).filter((name) => !served.has(name) && !recorded().has(name)).map((name) =>
        `${rule.alert ?? rule.record}: ${name}`
      )
    )
    expect(unknown).toEqual([])
  })

  it("every dashboard query reads only metrics /metrics serves, or the rules' recordings", () => {
    const queries = dashboardQueries()
    expect(queries.length).toBeGreaterThan(20)
    const unknown = queries.flatMap((q) =>
      metricNames(q.expr).filter((name) => !served.has(name) && !recorded().has(name)).map((name) =>
        `${q.where}: ${name}`
      )
    )
    expect(unknown).toEqual([])
  })

  it("the lexer finds the names (so an empty result above means something)", () => {
    expect(metricNames("sum by (route) (rate(a_total{x=\"y\"}[5m])) / ignoring(le) b:c > 0.5 and absent(d)")).toEqual([
      "a_total",
      "b:c",
      "d"
    ])
  })
})

describe("the PrometheusRule for Kubernetes", () => {
  it("holds exactly the groups of the rules file (update with vitest -u after changing the rules)", async () => {
    const resource = {
      apiVersion: "monitoring.coreos.com/v1",
      kind: "PrometheusRule",
      metadata: { name: "strata" },
      spec: readYaml(RULES)
    }
    const text = "# Generated from prometheus/rules/strata.rules.yaml by deploy/test/observability.test.ts\n" +
      "# (`pnpm exec vitest run deploy -u` rewrites it); edit the rules file, not this one.\n" +
      stringify(resource, { lineWidth: 0 })
    await expect(text).toMatchFileSnapshot(path("deploy/observability/prometheus-rule.yaml"))
  })
})
