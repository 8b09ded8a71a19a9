/**
 * The CI/CD pipeline, .github/workflows/ci.yaml: valid for GitHub Actions by
 * @action-validator/cli (the workflow schema, and the paths it names), with
 * the jobs the issue asks for wired to the scripts that run here too.
 */
import { describe, expect, it } from "@effect/vitest"
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { path, read, readYaml, run } from "./support/Repo.ts"

const WORKFLOW = ".github/workflows/ci.yaml"
const validator = path("deploy/node_modules/.bin/action-validator")
const workflow = readYaml(WORKFLOW)
const jobs = workflow.jobs as Record<string, any>
const steps = (job: string): string => JSON.stringify(jobs[job].steps)

describe("the CI workflow", () => {
  it("passes action-validator", () => {
    const result = run(validator, [WORKFLOW])
    expect(result.status, result.output).toBe(0)
  })

  it("fails action-validator when broken (so the pass above means something)", () => {
    const dir = mkdtempSync(join(tmpdir(), "strata-workflow-"))
    const broken = join(dir, "ci.yaml")
    writeFileSync(
      broken,
      read(WORKFLOW).replace("runs-on: ubuntu-24.04\n    timeout-minutes: 15", "runs_on: ubuntu-24.04")
    )
    const status = run(validator, [broken]).status
    rmSync(dir, { recursive: true })
    expect(status).not.toBe(0)
  })

  it("lints and checks formatting", () => {
    expect(steps("lint")).toContain("pnpm run lint")
  })

  it("tests with PostgreSQL, Redis and Kafka as services, where the tests look for them", () => {
    const { services, env } = jobs.test
    expect(Object.keys(services).toSorted()).toEqual(["kafka", "postgres", "redis"])
    expect(services.kafka.image).toMatch(/^apache\/kafka:4\./)
    expect(services.postgres.ports).toEqual([`${new URL(env.TEST_DATABASE_ADMIN_URL).port}:5432`])
    expect(services.redis.ports).toEqual([`${new URL(env.TEST_REDIS_URL).port}:6379`])
    expect(services.kafka.env.KAFKA_ADVERTISED_LISTENERS).toBe(`PLAINTEXT://${env.KAFKA_BROKERS}`)
    expect(services.kafka.ports).toEqual([`${env.KAFKA_BROKERS.split(":")[1]}:9092`])
    expect(env.CI).toBe("true")
    expect(steps("test")).toContain("./scripts/test")
    // Under CI, scripts/test brings promtool when it is missing.
    expect(read("scripts/test")).toMatch(/CI:-.*= true.*command -v promtool[\s\S]*apt-get install[^\n]*prometheus/)
  })

  it("builds and runs the image with buildah, reports its size and scans it", () => {
    expect(jobs.image.needs).toEqual(["lint", "test"])
    const image = steps("image")
    expect(image).toContain("buildah")
    expect(image).toContain("./scripts/image --test")
    expect(image).toContain("image: compressed")
    expect(image).toContain("GITHUB_STEP_SUMMARY")
    expect(jobs.image.steps.filter((s: any) => String(s.uses).startsWith("aquasecurity/trivy-action"))).toHaveLength(2)
    // The report line the summary greps for is the one scripts/image prints.
    expect(read("scripts/image")).toContain("image: compressed")
  })

  it("deploys to the prod overlay on main only, behind the production environment's approval", () => {
    const deploy = jobs.deploy
    expect(deploy.needs).toEqual(["image"])
    expect(deploy.environment).toBe("production")
    expect(deploy.if).toBe("github.ref == 'refs/heads/main' && github.event_name == 'push'")
    expect(steps("deploy")).toContain("./scripts/deploy \\\"${{ needs.image.outputs.image }}\\\" prod")
    expect(read("scripts/deploy")).toContain("kubectl apply -k \"$release\"")
    expect(jobs.image.outputs.image).toBe("${{ steps.push.outputs.image }}")
  })

  it("runs scripts that exist and are executable", () => {
    for (const script of ["scripts/test", "scripts/image", "scripts/deploy", "scripts/toolchain.sh"]) {
      accessSync(path(script), constants.X_OK | constants.R_OK)
    }
  })
})
