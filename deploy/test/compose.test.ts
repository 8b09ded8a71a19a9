/**
 * The compose stack and the image recipe, checked where no Docker engine runs:
 * compose.yaml against the Compose specification's JSON schema (the copy
 * dclint ships, with ajv), its Strata variables against the README's
 * configuration table, and the addresses between services; the Containerfile
 * against what the image must be (scripts/image --test runs the image itself).
 */
import { describe, expect, it } from "@effect/vitest"
import { Ajv } from "ajv"
import { existsSync, readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join, resolve } from "node:path"
import { configurationTable, path, read, readYaml } from "./support/Repo.ts"

const compose = readYaml("deploy/compose.yaml")
const services = compose.services as Record<string, any>
const strata = services.strata
const env = strata.environment as Record<string, string>

describe("deploy/compose.yaml", () => {
  it("is valid against the Compose specification's schema", () => {
    const require = createRequire(import.meta.url)
    const schemaFile = join(dirname(require.resolve("dclint/package.json")), "schemas/compose.schema.json")
    // Draft 07, Ajv's own default; Ajv knows that meta-schema under its http:// name only.
    const { $schema, ...schema } = JSON.parse(readFileSync(schemaFile, "utf8"))
    expect($schema).toMatch(/draft-07/)
    const ajv = new Ajv({ allErrors: true, strict: false })
    const validate = ajv.compile(schema)
    expect(validate(compose), JSON.stringify(validate.errors, null, 2)).toBe(true)
    // The validator rejects what the specification rejects.
    expect(validate({ services: { strata: { image: "x", restart: 3 } } })).toBe(false)
    expect(validate({ services: { strata: { image: "x", healthcheck: { tset: ["CMD"] } } } })).toBe(false)
  })

  it("runs Strata with PostgreSQL, Redis, Kafka (apache/kafka, KRaft), Jaeger, Prometheus and Grafana", () => {
    expect(Object.keys(services).toSorted()).toEqual(
      ["grafana", "jaeger", "kafka", "postgres", "prometheus", "redis", "strata"]
    )
    expect(services.kafka.image).toMatch(/^apache\/kafka:4\./)
    expect(services.kafka.environment.KAFKA_PROCESS_ROLES).toBe("broker,controller")
    expect(services.postgres.image).toMatch(/^postgres:(1[5-9]|[2-9]\d)/)
    for (const [name, service] of Object.entries(services)) {
      if (name !== "strata") expect(service.image, name).not.toMatch(/:latest$|^[^:]+$/)
    }
  })

  it("sets only variables of the README's configuration table on Strata", () => {
    const table = configurationTable()
    expect(Object.keys(env).filter((name) => !table.has(name))).toEqual([])
  })

  it("builds Strata from deploy/Containerfile in the context scripts/image prepares", () => {
    const context = resolve(path("deploy"), strata.build.context)
    expect(context).toBe(path(".build/image/context"))
    expect(resolve(context, strata.build.dockerfile)).toBe(path("deploy/Containerfile"))
    expect(read("scripts/image")).toContain("CTX=$OUT/context")
    expect(read("scripts/image")).toContain("OUT=$ROOT/.build/image")
  })

  it("runs Strata as in Kubernetes: read-only root, /tmp in memory, no capabilities, readiness checked", () => {
    expect(strata.read_only).toBe(true)
    expect(strata.tmpfs).toEqual(["/tmp"])
    expect(strata.cap_drop).toEqual(["ALL"])
    // The image has no shell: the check is exec-form and uses the image's node.
    expect(strata.healthcheck.test.slice(0, 2)).toEqual(["CMD", "/usr/local/bin/node"])
    expect(strata.healthcheck.test.join(" ")).toContain(`http://127.0.0.1:${env.PORT}/health/ready`)
  })

  it("points Strata at the services by their names and ports", () => {
    const database = new URL(env.DATABASE_URL)
    const postgres = services.postgres.environment
    expect(database.hostname).toBe("postgres")
    expect(database.port).toBe("5432")
    expect(decodeURIComponent(database.username)).toBe(postgres.POSTGRES_USER)
    expect(decodeURIComponent(database.password)).toBe(postgres.POSTGRES_PASSWORD)
    expect(database.pathname).toBe(`/${postgres.POSTGRES_DB}`)
    expect(services.postgres.healthcheck.test).toContain(postgres.POSTGRES_USER)

    const redis = new URL(env.REDIS_URL)
    expect([redis.hostname, redis.port]).toEqual(["redis", "6379"])

    // Strata's brokers are an advertised listener of the Kafka node, on a port it listens on.
    const kafka = services.kafka.environment
    const advertised = (kafka.KAFKA_ADVERTISED_LISTENERS as string).split(",").map((l) => l.replace(/^\w+:\/\//, ""))
    for (const broker of env.KAFKA_BROKERS.split(",")) {
      expect(advertised).toContain(broker)
      expect(kafka.KAFKA_LISTENERS).toContain(`://:${broker.split(":")[1]}`)
    }
    expect(kafka.KAFKA_CONTROLLER_QUORUM_VOTERS).toBe(`${kafka.KAFKA_NODE_ID}@kafka:9093`)

    const otlp = new URL(env.OTEL_EXPORTER_OTLP_ENDPOINT)
    expect(otlp.hostname).toBe("jaeger")
    expect(otlp.port).toBe("4318")

    expect(strata.ports).toEqual([`127.0.0.1:${env.PORT}:${env.PORT}`])
    for (const dependency of ["postgres", "redis"]) {
      expect(strata.depends_on[dependency].condition).toBe("service_healthy")
    }
  })

  it("has Prometheus scrape Strata on its port with the rules loaded, and Grafana read Prometheus", () => {
    expect(services.prometheus.volumes).toContain("./observability/prometheus:/etc/prometheus:ro")
    const prometheus = readYaml("deploy/observability/prometheus/prometheus.yml")
    const job = prometheus.scrape_configs.find((c: any) => c.job_name === "strata")
    expect(job.static_configs[0].targets).toEqual([`strata:${env.PORT}`])
    expect(job.metrics_path).toBe("/metrics")
    for (const file of prometheus.rule_files) {
      expect(existsSync(path("deploy/observability/prometheus", file)), file).toBe(true)
    }
    expect(services.prometheus.command).toContain("--config.file=/etc/prometheus/prometheus.yml")

    const sources = readYaml("deploy/observability/grafana/provisioning/datasources/datasources.yaml").datasources
    expect(sources.find((s: any) => s.type === "prometheus").url).toBe("http://prometheus:9090")
    expect(sources.find((s: any) => s.type === "jaeger").url).toBe("http://jaeger:16686")
    expect(services.prometheus.ports).toEqual(["127.0.0.1:9090:9090"])
    expect(services.jaeger.ports).toContain("127.0.0.1:16686:16686")
    expect(services.grafana.volumes).toContain("./observability/grafana/provisioning:/etc/grafana/provisioning:ro")
    const home = services.grafana.environment.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH as string
    expect(existsSync(path("deploy/observability/grafana/dashboards", home.split("/").at(-1)!))).toBe(true)
    // Every folder compose mounts exists.
    for (const service of Object.values(services)) {
      for (const volume of (service.volumes ?? []) as Array<string>) {
        if (volume.startsWith("./")) expect(existsSync(path("deploy", volume.split(":")[0])), volume).toBe(true)
      }
    }
  })
})

describe("deploy/Containerfile", () => {
  const text = read("deploy/Containerfile")
  const instructions = text.split("\n").filter((line) => /^[A-Z]+ /.test(line))

  it("builds FROM scratch, with exec-form ENTRYPOINT and CMD, as uid 65532, and no HEALTHCHECK", () => {
    expect(instructions.filter((i) => i.startsWith("FROM "))).toEqual(["FROM scratch"])
    expect(instructions).toContain("USER 65532:65532")
    const entrypoint = instructions.find((i) => i.startsWith("ENTRYPOINT "))!
    expect(JSON.parse(entrypoint.slice("ENTRYPOINT ".length))).toEqual(["/usr/local/bin/node"])
    const cmd = instructions.find((i) => i.startsWith("CMD "))!
    expect(JSON.parse(cmd.slice("CMD ".length))).toEqual(["--max-semi-space-size=32", "/app/server.mjs"])
    expect(instructions.some((i) => i.startsWith("HEALTHCHECK"))).toBe(false)
  })

  it("labels source, revision and version, and sets only variables of the configuration table", () => {
    for (const label of ["source", "revision", "version"]) {
      expect(text).toContain(`org.opencontainers.image.${label}="\${${label.toUpperCase()}}"`)
    }
    const table = configurationTable()
    const names = instructions.filter((i) => i.startsWith("ENV ")).flatMap((i) =>
      Array.from(i.matchAll(/([A-Z_][A-Z0-9_]*)=/g), (m) => m[1])
    )
    expect(names.length).toBeGreaterThan(0)
    expect(names.filter((name) => !table.has(name))).toEqual([])
  })

  it("copies the trees scripts/image prepares, and the entry points scripts/bundle.ts writes", () => {
    const copies = instructions.filter((i) => i.startsWith("COPY ")).map((i) => i.split(" ").at(-2))
    expect(copies).toEqual(["runtime/", "app/", "data/"])
    const script = read("scripts/image")
    for (const tree of ["runtime", "app", "data"]) expect(script).toContain(`"$CTX/${tree}`)
    const bundle = read("scripts/bundle.ts")
    expect(bundle).toContain("server: join(root, \"packages/server/src/main.ts\")")
    expect(bundle).toContain("cli: join(root, \"packages/server/src/cli/main.ts\")")
    // DATA_DIR is where the data/ tree lands, owned by the image's user.
    expect(instructions).toContain("COPY --chown=65532:65532 data/ /data/")
    expect(instructions).toContain("ENV DATA_DIR=/data")
  })
})
