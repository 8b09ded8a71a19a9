/**
 * Reads a group of settings from the current ConfigProvider (the environment,
 * unless a test says otherwise), every variable on its own, so that one bad
 * variable does not hide the next: startup names them all at once, one line each.
 *
 *   Invalid MAX_BODY_BYTES="lots": expected a size in bytes such as 65536, 64KiB or 1MiB
 */
import { Config, ConfigProvider, Data, Effect, Result, SchemaIssue } from "effect"

/** The exit code of a configuration error (EX_CONFIG, sysexits.h). */
export const EX_CONFIG = 78

/** Variables whose values never appear in a message; a test keeps every Redacted setting here. */
export const SECRET_VARIABLES: ReadonlySet<string> = new Set([
  "DATABASE_URL",
  "DATABASE_READ_URL",
  "REDIS_URL",
  "KAFKA_SASL_PASSWORD",
  "OTEL_EXPORTER_OTLP_HEADERS"
])

export interface Problem {
  readonly variable: string
  /** The value as set, `undefined` when the source could not be read. */
  readonly value: string | undefined
  readonly expected: string
}

/** One line per bad variable: its name, its value (redacted when secret), what is expected. */
export const problemLine = ({ expected, value, variable }: Problem): string =>
  `Invalid ${variable}${
    value === undefined ? "" : `=${SECRET_VARIABLES.has(variable) ? "<redacted>" : JSON.stringify(value)}`
  }: ${expected}`

export class InvalidConfig extends Data.TaggedError("InvalidConfig")<{ readonly problems: ReadonlyArray<Problem> }> {
  override get message(): string {
    return this.problems.map(problemLine).join("\n")
  }
}

// The value is on the line already (and redacted when secret), so Effect's
// own ", got …" suffix is dropped rather than repeat, or leak, it.
const formatter = SchemaIssue.makeFormatterStandardSchemaV1({
  leafHook: (issue) => SchemaIssue.defaultLeafHook(issue).replace(/, got [\s\S]*$/, "")
})

const problemOf = (provider: ConfigProvider.ConfigProvider, error: Config.ConfigError) =>
  Effect.gen(function*() {
    if (error.cause._tag === "SourceError") {
      return { variable: "(source)", value: undefined, expected: error.cause.message }
    }
    const issues = formatter(error.cause.issue).issues
    const path = issues[0]?.path ?? []
    const node = yield* Effect.orElseSucceed(provider.load(path as ConfigProvider.Path), () => undefined)
    return {
      variable: path.map(String).join("_"),
      value: node?.value,
      expected: issues.map((issue) => issue.message).join("; ")
    }
  })

/** The values a set of fields reads: what a config slice holds. */
export type Values<Fields extends Record<string, Config.Config<unknown>>> = {
  readonly [K in keyof Fields]: Config.Success<Fields[K]>
}

/** Every field of `fields`, or every problem among them. */
export const readAll = <Fields extends Record<string, Config.Config<unknown>>>(
  fields: Fields
): Effect.Effect<Values<Fields>, InvalidConfig> =>
  Effect.gen(function*() {
    const provider = yield* ConfigProvider.ConfigProvider
    const values: Record<string, unknown> = {}
    const problems: Array<Problem> = []
    for (const [key, config] of Object.entries(fields)) {
      const result = yield* Effect.result(config.parse(provider))
      if (Result.isSuccess(result)) values[key] = result.success
      else problems.push(yield* problemOf(provider, result.failure))
    }
    if (problems.length > 0) return yield* new InvalidConfig({ problems })
    return values as Values<Fields>
  })

/** Reads `fields` from the process environment at once, for a check before anything starts. */
export const readEnvironment = <Fields extends Record<string, Config.Config<unknown>>>(
  fields: Fields
): Result.Result<Values<Fields>, ReadonlyArray<Problem>> =>
  Effect.runSync(
    readAll(fields).pipe(
      Effect.map(Result.succeed),
      Effect.catchTag("InvalidConfig", (e) => Effect.succeed(Result.fail(e.problems))),
      Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv())
    )
  )
