/**
 * The Kubernetes manifests: `kubectl kustomize` renders each overlay, every
 * object validates against its schema (kubernetes-models, with the Istio and
 * prometheus-operator models), and the rules that cross files hold: probe
 * paths and ports exist in the app, every env name is in the README's
 * configuration table, the grace period covers the shutdown settings, the PDB
 * lets a node drain at the HPA's minimum, mesh timeouts and retries agree with
 * REQUEST_TIMEOUT and the idempotency rules, and scripts/deploy migrates first.
 */
import { describe, expect, it } from "@effect/vitest"
import { methodsOf, routeOf } from "@strata/server"
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { configurationTable, read, readYaml, readYamlDocuments, run, seconds, tool } from "./support/Repo.ts"

const kubectl = tool("kubectl", "rendering the Kubernetes overlays (kubectl kustomize)")
const suite = describe.skipIf(kubectl === undefined)

type Obj = {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; labels?: any; annotations?: any }
  spec?: any
  data?: any
}

const render = (dir: string): Array<Obj> => {
  const result = run("kubectl", ["kustomize", dir])
  if (result.status !== 0) throw new Error(result.output)
  return readYamlDocuments(result.stdout)
}

/** The model class of an object, from the packages that carry the schemas. */
const modelOf = async (object: Obj) => {
  const [group, version] = object.apiVersion.includes("/") ? object.apiVersion.split("/") : ["", object.apiVersion]
  const module = group === ""
    ? `kubernetes-models/${version}/${object.kind}`
    : group.endsWith(".istio.io")
    ? `@kubernetes-models/istio/${group}/${version}/${object.kind}`
    : group === "monitoring.coreos.com"
    ? `@kubernetes-models/prometheus-operator/${group}/${version}/${object.kind}`
    : `kubernetes-models/${group}/${version}/${object.kind}`
  const loaded = (await import(module)) as Record<string, new(data: unknown) => { validate: () => void }>
  return loaded[object.kind]
}

const one = (objects: Array<Obj>, kind: string, name?: string): Obj => {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name.startsWith(name)))
  expect(found.length, `${kind} ${name ?? ""}`).toBe(1)
  return found[0]
}

const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([key, value]) => labels[key] === value)

/** The value a setting takes in the pod: the ConfigMap's, else the README table's default. */
const setting = (config: Obj, name: string): string => config.data?.[name] ?? configurationTable().get(name)!

/** Istio's route choice: the first http route whose match (or no match) fits the request. */
const routeFor = (vs: Obj, request: { method: string; headers: Record<string, string> }) =>
  (vs.spec.http as Array<any>).find((route) =>
    route.match === undefined ||
    (route.match as Array<any>).some((m) =>
      (m.method?.exact === undefined || m.method.exact === request.method) &&
      Object.entries(m.headers ?? {}).every(([header, rule]: [string, any]) => {
        const value = request.headers[header]
        return value !== undefined && (rule.regex === undefined || new RegExp(`^(?:${rule.regex})$`).test(value))
      })
    )
  )

const OVERLAYS = ["dev", "prod"] as const

suite.each(OVERLAYS)("the %s overlay", (overlay) => {
  // Rendered while the tests are collected, which happens even when skipped.
  if (kubectl === undefined) return it.skip("renders", () => {})
  const objects = render(`deploy/k8s/overlays/${overlay}`)
  const deployment = one(objects, "Deployment", "strata")
  const pod = deployment.spec.template
  const container = pod.spec.containers[0]
  const config = one(objects, "ConfigMap", "strata-config")
  const hpa = one(objects, "HorizontalPodAutoscaler")

  it("renders every object the deployment needs", () => {
    const kinds = new Set(objects.map((o) => o.kind))
    for (
      const kind of [
        "Deployment",
        "Service",
        "ServiceAccount",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "NetworkPolicy",
        "PeerAuthentication",
        "DestinationRule",
        "VirtualService",
        "ServiceMonitor",
        "PrometheusRule"
      ]
    ) expect(kinds, kind).toContain(kind)
    for (const object of objects) {
      expect(object.metadata.namespace, object.metadata.name).toBe(`strata${overlay === "prod" ? "" : "-dev"}`)
    }
  })

  it("validates every object against its schema", async () => {
    for (const object of objects) {
      const Model = await modelOf(object)
      expect(Model, `${object.apiVersion} ${object.kind}`).toBeDefined()
      // kustomize wraps a Secret's base64 at 76 columns, which the API server's
      // decoder accepts and the schema's pattern does not.
      const data = object.kind === "Secret"
        ? {
          ...object,
          data: Object.fromEntries(Object.entries(object.data).map(([k, v]) => [k, String(v).replace(/\s/g, "")]))
        }
        : object
      expect(() => new Model(data).validate(), `${object.kind} ${object.metadata.name}`).not.toThrow()
    }
  })

  it("catches a wrong field type (so the validation above means something)", async () => {
    const Model = await modelOf(deployment)
    const broken = structuredClone(deployment)
    broken.spec.template.spec.terminationGracePeriodSeconds = "45"
    expect(() => new Model(broken).validate()).toThrow(/terminationGracePeriodSeconds/)
  })

  it("probes paths the server answers, on the port it listens on", () => {
    const port = container.ports.find((p: any) => p.name === "http")
    expect(String(port.containerPort)).toBe(setting(config, "PORT"))
    expect(container.livenessProbe.httpGet.path).toBe("/health/live")
    expect(container.startupProbe.httpGet.path).toBe("/health/live")
    expect(container.readinessProbe.httpGet.path).toBe("/health/ready")
    for (const probe of [container.livenessProbe, container.readinessProbe, container.startupProbe]) {
      expect(routeOf(probe.httpGet.path)).toBe(probe.httpGet.path)
      expect(methodsOf(probe.httpGet.path)).toContain("GET")
      expect(probe.httpGet.port).toBe("http")
    }
    // The readiness check pings the database for up to 1 s; the probe waits longer.
    expect(container.readinessProbe.timeoutSeconds).toBeGreaterThan(1)
  })

  it("sets only variables of the README's configuration table", () => {
    const table = configurationTable()
    const names = [...Object.keys(config.data), ...container.env.map((e: any) => e.name)]
    expect(names.filter((name) => !table.has(name))).toEqual([])
    for (const env of container.env.filter((e: any) => e.valueFrom?.secretKeyRef !== undefined)) {
      expect(env.valueFrom.secretKeyRef.key).toBe(env.name)
    }
    expect(container.envFrom.map((e: any) => e.configMapRef.name)).toEqual([config.metadata.name])
  })

  it("gives the server longer to stop than SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT, and the sidecar drains through it", () => {
    const shutdown = seconds(setting(config, "SHUTDOWN_DELAY")) + seconds(setting(config, "SHUTDOWN_TIMEOUT"))
    const grace = pod.spec.terminationGracePeriodSeconds
    expect(grace).toBeGreaterThan(shutdown)
    const proxy = /terminationDrainDuration: (\S+)/.exec(pod.metadata.annotations["proxy.istio.io/config"])
    const drain = seconds(proxy![1])
    expect(drain).toBeGreaterThanOrEqual(shutdown)
    expect(drain).toBeLessThan(grace)
  })

  it("runs as the image's non-root user, read-only, with no capabilities, under the default seccomp profile", () => {
    expect(pod.spec.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      seccompProfile: { type: "RuntimeDefault" }
    })
    expect(container.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] }
    })
    expect(container.volumeMounts.map((m: any) => m.mountPath)).toEqual(["/tmp"])
    expect(pod.spec.automountServiceAccountToken).toBe(false)
  })

  it("asks for resources and spreads over zones", () => {
    expect(container.resources.requests.cpu).toBeDefined()
    expect(container.resources.requests.memory).toBe(container.resources.limits.memory)
    expect(container.resources.limits.cpu).toBeDefined()
    const keys = pod.spec.topologySpreadConstraints.map((c: any) => c.topologyKey)
    expect(keys).toContain("topology.kubernetes.io/zone")
    for (const constraint of pod.spec.topologySpreadConstraints) {
      expect(matches(constraint.labelSelector.matchLabels, pod.metadata.labels)).toBe(true)
    }
  })

  it("leaves the replica count to the HPA, which scales on CPU below the level where GC pauses hurt", () => {
    expect(deployment.spec.replicas).toBeUndefined()
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: "Deployment", name: deployment.metadata.name })
    const cpu = hpa.spec.metrics.find((m: any) => m.resource?.name === "cpu")
    // The HPA acts only beyond its 10 % tolerance; it must act before 80 %.
    expect(cpu.resource.target.averageUtilization * 1.1).toBeLessThan(80)
    if (overlay === "prod") expect([hpa.spec.minReplicas, hpa.spec.maxReplicas]).toEqual([3, 50])
  })

  it("lets a node drain evict at least one pod when the HPA sits at its minimum", () => {
    const pdb = one(objects, "PodDisruptionBudget")
    expect(matches(pdb.spec.selector.matchLabels, pod.metadata.labels)).toBe(true)
    const n = hpa.spec.minReplicas
    const amount = (value: number | string, roundUp: boolean) =>
      typeof value === "number"
        ? value
        : roundUp
        ? Math.ceil((n * Number.parseFloat(value)) / 100)
        : Math.floor((n * Number.parseFloat(value)) / 100)
    // Kubernetes rounds both maxUnavailable and minAvailable percentages up.
    const allowed = pdb.spec.maxUnavailable !== undefined
      ? amount(pdb.spec.maxUnavailable, true)
      : n - amount(pdb.spec.minAvailable, true)
    expect(allowed).toBeGreaterThanOrEqual(1)
  })

  it("exposes the pods' http port through the Service, scraped by the ServiceMonitor at /metrics", () => {
    const service = one(objects, "Service")
    expect(matches(service.spec.selector, pod.metadata.labels)).toBe(true)
    expect(service.spec.ports.map((p: any) => p.targetPort)).toEqual(["http"])
    const monitor = one(objects, "ServiceMonitor")
    expect(matches(monitor.spec.selector.matchLabels, service.metadata.labels)).toBe(true)
    expect(service.spec.ports.map((p: any) => p.name)).toContain(monitor.spec.endpoints[0].port)
    expect(routeOf(monitor.spec.endpoints[0].path)).toBe("/metrics")
    // Prometheus names the job after the Service: the rules select job="strata".
    expect(service.metadata.name).toBe("strata")
  })

  it("enforces mutual TLS on the pods and sends the mesh's traffic to the Service", () => {
    const peer = one(objects, "PeerAuthentication")
    expect(peer.spec.mtls.mode).toBe("STRICT")
    expect(matches(peer.spec.selector.matchLabels, pod.metadata.labels)).toBe(true)
    const service = one(objects, "Service")
    expect(one(objects, "DestinationRule").spec.host).toBe(service.metadata.name)
    expect(one(objects, "DestinationRule").spec.trafficPolicy.tls.mode).toBe("ISTIO_MUTUAL")
    const vs = one(objects, "VirtualService")
    expect(vs.spec.hosts).toEqual([service.metadata.name])
  })

  it("times out after the server's own REQUEST_TIMEOUT, and retries only what is safe to repeat", () => {
    const vs = one(objects, "VirtualService")
    const deadline = seconds(setting(config, "REQUEST_TIMEOUT"))
    for (const route of vs.spec.http) {
      // Later than the server's 503 with Retry-After, so that answer reaches the client.
      expect(seconds(route.timeout), route.name).toBeGreaterThan(deadline)
      // Istio retries every route unless told otherwise: each route says.
      expect(route.retries, route.name).toBeDefined()
    }
    expect(routeFor(vs, { method: "POST", headers: {} }).retries.attempts).toBe(0)
    expect(routeFor(vs, { method: "POST", headers: { "idempotency-key": "k-1" } }).retries.attempts).toBeGreaterThan(0)
    expect(routeFor(vs, { method: "GET", headers: {} }).retries.attempts).toBeGreaterThan(0)
    expect(routeFor(vs, { method: "GET", headers: {} }).retries.retryOn).not.toMatch(/5xx|gateway-error/)
  })

  it("opens the NetworkPolicy for the app's port and the dependencies' ports", () => {
    const policy = one(objects, "NetworkPolicy")
    expect(matches(policy.spec.podSelector.matchLabels, pod.metadata.labels)).toBe(true)
    expect(policy.spec.ingress.flatMap((r: any) => r.ports.map((p: any) => p.port))).toEqual(["http"])
    const egress = policy.spec.egress.flatMap((r: any) => r.ports.map((p: any) => p.port))
    for (const port of [53, 5432, 6379, 9092, 4318, 15012]) expect(egress).toContain(port)
    for (const name of ["DATABASE_URL", "REDIS_URL", "KAFKA_BROKERS", "OTEL_EXPORTER_OTLP_ENDPOINT"]) {
      const value = config.data[name]
      if (value === undefined) continue
      const port = Number(/:(\d+)(?:\/|,|$)/.exec(value)?.[1])
      expect(egress, `${name} ${value}`).toContain(port)
    }
  })

  it("ships the dashboard as a ConfigMap for Grafana's sidecar and the rules as a PrometheusRule", () => {
    const dashboard = one(objects, "ConfigMap", "strata-dashboard")
    expect(dashboard.metadata.labels.grafana_dashboard).toBe("1")
    expect(dashboard.data["strata.json"]).toBe(read("deploy/observability/grafana/dashboards/strata.json"))
    const rule = one(objects, "PrometheusRule")
    expect(rule.spec).toEqual(readYaml("deploy/observability/prometheus/rules/strata.rules.yaml"))
  })

  it("names an image from a registry, never :latest", () => {
    for (const image of objects.flatMap((o) => o.spec?.template?.spec?.containers ?? []).map((c: any) => c.image)) {
      expect(image).toMatch(/^[a-z0-9.-]+\/strata[:@]/)
      expect(image).not.toMatch(/:latest$/)
    }
  })

  if (overlay === "prod") {
    it("migrates with a Job before the rollout, never at the pods' startup", () => {
      expect(config.data.MIGRATE_ON_START).toBe("false")
      const job = one(objects, "Job", "strata-migrate")
      const spec = job.spec.template.spec
      const migrate = spec.containers[0]
      expect(migrate.image).toBe(container.image)
      expect(migrate.args).toEqual(["/app/cli.mjs", "migrate"])
      expect(migrate.envFrom).toEqual(container.envFrom)
      expect(migrate.env.map((e: any) => e.name)).toEqual(["DATABASE_URL"])
      expect(job.spec.template.metadata.annotations["sidecar.istio.io/inject"]).toBe("false")
      expect(spec.restartPolicy).toBe("Never")
      expect(spec.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } })
      expect(migrate.securityContext).toMatchObject({ readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } })
      // What scripts/deploy applies before the Job runs: the configuration it reads.
      expect(config.metadata.labels["app.kubernetes.io/component"]).toBe("config")
      expect(job.metadata.labels["app.kubernetes.io/component"]).toBe("migration")
      // The NetworkPolicy covers the Job's pods too.
      expect(matches(one(objects, "NetworkPolicy").spec.podSelector.matchLabels, job.spec.template.metadata.labels))
        .toBe(true)
      // The Secret lives in the cluster only.
      expect(objects.filter((o) => o.kind === "Secret")).toEqual([])
    })
  } else {
    it("migrates at startup and makes its Secret from example values", () => {
      expect(config.data.MIGRATE_ON_START).toBe("true")
      const secret = one(objects, "Secret", "strata-secrets")
      const values = Object.values(secret.data as Record<string, string>).map((v) =>
        Buffer.from(v, "base64").toString()
      )
      expect(values.join(" ")).toContain("example")
      expect(container.env.find((e: any) => e.name === "DATABASE_URL").valueFrom.secretKeyRef.name).toBe(
        secret.metadata.name
      )
    })
  }
})

suite("scripts/deploy", () => {
  const image = "registry.example.com/strata@sha256:" + "ab".repeat(32)

  it("renders the prod overlay with the released image in the Deployment and the migration Job", () => {
    const result = run("scripts/deploy", ["--render", image])
    expect(result.status, result.output).toBe(0)
    const objects = readYamlDocuments(result.stdout)
    const images = objects.flatMap((o) => o.spec?.template?.spec?.containers ?? []).map((c: any) => c.image)
    expect(images).toEqual([image, image])
  })

  it("deletes the old Job, applies the configuration and the Job, waits for it, then applies everything", () => {
    // A kubectl that renders for real and only records what would change the cluster.
    const bin = mkdtempSync(join(tmpdir(), "strata-kubectl-"))
    const log = join(bin, "calls.log")
    writeFileSync(
      join(bin, "kubectl"),
      `#!/usr/bin/env bash\nif [ "$1" = kustomize ]; then exec ${kubectl} "$@"; fi\necho "$*" >> ${log}\n`
    )
    chmodSync(join(bin, "kubectl"), 0o755)
    const result = runWithPath(bin, ["scripts/deploy", image])
    const calls = readFileSync(log, "utf8").trim().split("\n").map((line) => line.replace(/\.release-\w+/, ".release"))
    rmSync(bin, { recursive: true })
    expect(result.status, result.output).toBe(0)
    expect(calls).toEqual([
      "delete job strata-migrate -n strata --ignore-not-found --wait=true",
      "apply -k deploy/k8s/.release -l app.kubernetes.io/component in (config,migration)",
      "wait --for=condition=complete job/strata-migrate -n strata --timeout=10m",
      "apply -k deploy/k8s/.release",
      "rollout status deployment/strata -n strata --timeout=10m"
    ])
  })
})

const runWithPath = (bin: string, command: Array<string>) => run("env", [`PATH=${bin}:${process.env.PATH}`, ...command])
