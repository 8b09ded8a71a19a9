/**
 * Reading the configuration: tests see only defaults and their overrides, never
 * the shell's environment; enumerations match in any case; a bad environment
 * stops the server and the CLI with one line per bad variable and exit code 78.
 */
import { describe, expect, it } from "@effect/vitest"
import { freshDatabase, postgresAvailable, startServer, strata } from "@strata/testing"
import { ConfigProvider, Duration, Effect, Exit, Option, Redacted } from "effect"
import { execFile } from "node:child_process"
import { join } from "node:path"
import { allFields, AppConfig } from "../src/platform/config/AppConfig.ts"
import { DatabaseConfig } from "../src/platform/config/DatabaseConfig.ts"
import { envName } from "../src/platform/config/Describe.ts"
import { HttpConfig } from "../src/platform/config/HttpConfig.ts"
import { KafkaConfig } from "../src/platform/config/KafkaConfig.ts"
import { readAll, SECRET_VARIABLES } from "../src/platform/config/Read.ts"
import { TelemetryConfig } from "../src/platform/config/TelemetryConfig.ts"

const withEnv = (env: Record<string, string>) =>
  Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env }))

const readFrom = (env: Record<string, string>) => Effect.runSyncExit(readAll(allFields).pipe(withEnv(env)))

const settingsFrom = (env: Record<string, string>) => {
  const exit = readFrom(env)
  if (Exit.isFailure(exit)) throw new Error(String(exit.cause))
  return exit.value
}

describe("AppConfig.layerWith", () => {
  it("reads defaults and overrides only, whatever the shell exported", async () => {
    const saved = { ...process.env }
    process.env.MAX_BODY_BYTES = "10"
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = "http://collector.invalid:4318"
    process.env.PARTITION_INTERVAL = "nonsense"
    try {
      const read = Effect.gen(function*() {
        return { app: yield* AppConfig, http: yield* HttpConfig, telemetry: yield* TelemetryConfig }
      })
      const defaults = await Effect.runPromise(read.pipe(Effect.provide(AppConfig.layerWith({}))))
      expect(defaults.app.maxBodyBytes).toBe(1024 * 1024)
      expect(defaults.http.maxBodyBytes).toBe(1024 * 1024)
      expect(Option.isNone(defaults.telemetry.otlpEndpoint)).toBe(true)
      expect(defaults.app.partitionInterval).toBe("month")

      // Each slice gets the same overrides as AppConfig.
      const overridden = await Effect.runPromise(
        read.pipe(Effect.provide(AppConfig.layerWith({ maxBodyBytes: 5, accessLog: false })))
      )
      expect([overridden.app.maxBodyBytes, overridden.http.maxBodyBytes]).toEqual([5, 5])
      expect([overridden.app.accessLog, overridden.telemetry.accessLog]).toEqual([false, false])

      // The production layer does read the environment.
      process.env.PARTITION_INTERVAL = "week"
      const production = await Effect.runPromise(read.pipe(Effect.provide(AppConfig.layer)))
      expect(production.http.maxBodyBytes).toBe(10)
      expect(production.app.partitionInterval).toBe("week")
    } finally {
      for (const name of ["MAX_BODY_BYTES", "OTEL_EXPORTER_OTLP_ENDPOINT", "PARTITION_INTERVAL"]) {
        if (saved[name] === undefined) delete process.env[name]
        else process.env[name] = saved[name]
      }
    }
  })

  it("gives each slice only its own variables", async () => {
    const slices = await Effect.runPromise(
      Effect.gen(function*() {
        return { db: yield* DatabaseConfig, kafka: yield* KafkaConfig }
      }).pipe(Effect.provide(AppConfig.layerWith({ dbRetries: 0 })))
    )
    expect(slices.db.dbRetries).toBe(0)
    expect("kafkaTopic" in slices.db).toBe(false)
    expect("dbRetries" in slices.kafka).toBe(false)
  })
})

describe("a slice's own layer", () => {
  it("reads only its variables", () => {
    const env = withEnv({ LOG_LEVEL: "loud", PORT: "9090" })
    const http = Effect.runSyncExit(
      Effect.provide(
        Effect.gen(function*() {
          return yield* HttpConfig
        }),
        HttpConfig.layer
      ).pipe(env)
    )
    expect(Exit.isSuccess(http) && http.value.port).toBe(9090)
    const telemetry = Effect.runSyncExit(
      Effect.provide(
        Effect.gen(function*() {
          return yield* TelemetryConfig
        }),
        TelemetryConfig.layer
      ).pipe(env)
    )
    expect(Exit.isFailure(telemetry)).toBe(true)
  })
})

describe("enumerations", () => {
  it("accept LOG_LEVEL in pino's, OpenTelemetry's and Effect's spellings", () => {
    const cases = {
      debug: "Debug",
      warn: "Warn",
      WARN: "Warn",
      Warn: "Warn",
      info: "Info",
      error: "Error",
      fatal: "Fatal",
      trace: "Trace",
      all: "All",
      none: "None"
    }
    for (const [given, level] of Object.entries(cases)) {
      expect(settingsFrom({ LOG_LEVEL: given }).logLevel).toBe(level)
    }
  })

  it("match in any case and answer the canonical spelling", () => {
    const settings = settingsFrom({
      PARTITION_INTERVAL: "WEEK",
      OTEL_TRACES_SAMPLER: "ParentBased_Always_Off",
      KAFKA_SASL_MECHANISM: "scram-sha-512",
      LOG_FORMAT: "Pretty",
      OTEL_EXPORTER_OTLP_PROTOCOL: "HTTP/JSON",
      MIGRATE_ON_START: "No",
      ACCESS_LOG: "FALSE",
      KAFKA_TLS: "On",
      RETENTION: "OFF"
    })
    expect(settings.partitionInterval).toBe("week")
    expect(settings.tracesSampler).toBe("parentbased_always_off")
    expect(settings.kafkaSaslMechanism).toEqual(Option.some("SCRAM-SHA-512"))
    expect(settings.logFormat).toBe("pretty")
    expect(settings.otlpProtocol).toBe("http/json")
    expect([settings.migrateOnStart, settings.accessLog, settings.kafkaTls]).toEqual([false, false, true])
    expect(Option.isNone(settings.retention)).toBe(true)
    expect(settingsFrom({ RETENTION: "400d" }).retention).toEqual(Option.some(Duration.days(400)))
  })
})

describe("a bad configuration", () => {
  it("names every bad variable at once, its value and what is expected", () => {
    const exit = readFrom({
      LOG_LEVEL: "loud",
      MAX_BODY_BYTES: "lots",
      PARTITION_INTERVAL: "fortnight",
      PORT: "99999",
      HOST: "fine"
    })
    expect(Exit.isFailure(exit)).toBe(true)
    const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
    expect(error?._tag === "Fail" ? error.error.message.split("\n") : error).toEqual([
      `Invalid PORT="99999": expected a whole number from 1 to 65535`,
      `Invalid MAX_BODY_BYTES="lots": expected a size in bytes such as 65536, 64KiB or 1MiB`,
      `Invalid PARTITION_INTERVAL="fortnight": expected one of day, week, month (any case)`,
      `Invalid LOG_LEVEL="loud": expected one of All, Fatal, Error, Warn, Info, Debug, Trace, None (any case)`
    ])
  })

  it("never shows a secret's value", () => {
    const exit = readFrom({ OTEL_EXPORTER_OTLP_HEADERS: "authorization: Bearer TOP-SECRET" })
    const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
    const message = error?._tag === "Fail" ? error.error.message : ""
    expect(message).toBe(
      "Invalid OTEL_EXPORTER_OTLP_HEADERS=<redacted>: expected name=value pairs separated by commas, values percent-encoded"
    )
  })

  it("treats every Redacted setting as secret", () => {
    const settings = settingsFrom({
      DATABASE_URL: "postgres://u:p@h/db",
      DATABASE_READ_URL: "postgres://u:p@r1/db,postgres://u:p@r2/db",
      REDIS_URL: "redis://h:6379"
    })
    const secret = (value: unknown): boolean =>
      Array.isArray(value)
        ? value.length > 0 && value.every(secret)
        : Redacted.isRedacted(Option.isOption(value) ? Option.getOrUndefined(value) : value)
    const redacted = Object.entries(settings)
      .filter(([, value]: [string, unknown]) => secret(value))
      .map(([key]) => envName(key))
    expect(redacted.toSorted()).toEqual([...SECRET_VARIABLES].toSorted())
  })

  it("stops the server with one line per variable and exit code 78", async () => {
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [join(import.meta.dirname, "../src/main.ts")], {
        env: { ...process.env, MAX_BODY_BYTES: "lots", LOG_LEVEL: "loud", DATABASE_URL: "" }
      }, (error, stdout, stderr) => resolve({ code: error === null ? 0 : (error.code as number), stdout, stderr }))
    )
    expect(result.code).toBe(78)
    expect(result.stderr.trimEnd().split("\n")).toEqual([
      `Invalid MAX_BODY_BYTES="lots": expected a size in bytes such as 65536, 64KiB or 1MiB`,
      `Invalid LOG_LEVEL="loud": expected one of All, Fatal, Error, Warn, Info, Debug, Trace, None (any case)`
    ])
    expect(result.stdout).toBe("")
  }, 30_000)

  it("stops the CLI the same way", async () => {
    const result = await strata(["config"], { MAX_BATCH: "0", KAFKA_SASL_MECHANISM: "kerberos" })
    expect(result.code).toBe(78)
    expect(result.stderr.trimEnd().split("\n")).toEqual([
      `Invalid MAX_BATCH="0": expected a whole number from 1 to 10000`,
      `Invalid KAFKA_SASL_MECHANISM="kerberos": expected one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (any case)`
    ])
    expect(result.stdout).toBe("")
  }, 30_000)
})

describe.runIf(await postgresAvailable())("LOG_LEVEL=debug", () => {
  it("starts the server (it used to stop it)", async () => {
    const db = await freshDatabase()
    const server = await startServer({ DATABASE_URL: db.url, LOG_LEVEL: "debug" }, { withKey: false })
    try {
      expect((await fetch(`${server.base}/health/ready`)).status).toBe(200)
    } finally {
      server.child.kill("SIGKILL")
      await server.exited
      await db.drop()
    }
  }, 60_000)
})
