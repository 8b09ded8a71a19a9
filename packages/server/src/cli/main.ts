/**
 * The command-line tool, `pnpm strata <command>`: migrations, tenants, API keys,
 * the effective configuration and a live view of the events in Kafka. It reads the same environment as the server
 * and uses the same Db layer, so it works on whatever database the server uses.
 *
 * Output meant for scripts (a new key) goes alone to stdout; everything else a
 * person should read goes to stderr. Exit code 1 on any error.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Scopes, TenantName } from "@strata/domain"
import { Console, Duration, Effect, Layer, Option, References, Result, Schema } from "effect"
import { Argument, CliError, Command, Flag } from "effect/cli"
import { type ApiKeyInfo, ApiKeys } from "../auth/ApiKeys.ts"
import { AppConfig } from "../config/AppConfig.ts"
import { effectiveConfig } from "../config/Describe.ts"
import { parseDuration } from "../config/Units.ts"
import { DatabaseLive } from "../db/Database.ts"
import { DbPolicy } from "../db/DbPolicy.ts"
import { runMigrations } from "../db/Migrations.ts"
import { tailEvents } from "../events/Tail.ts"
import { logSettings } from "../observability/Logging.ts"

/** A message for the person at the terminal; the command fails with exit code 1. */
class UsageError extends Schema.TaggedError<UsageError>()("UsageError", { message: Schema.String }) {}

const messageOf = (error: unknown) => error instanceof Error ? error.message : String(error)

const Database = DatabaseLive.pipe(Layer.provideMerge(AppConfig.layer))
const KeysLive = ApiKeys.layerPg.pipe(Layer.provide(DbPolicy.layer), Layer.provideMerge(Database))

const migrate = Command.make("migrate", {}, () =>
  Effect.gen(function*() {
    const applied = yield* runMigrations
    yield* Console.error(
      applied.length === 0
        ? "Schema is up to date."
        : `Applied: ${applied.map(([id, name]) => `${id}_${name}`).join(", ")}`
    )
  }).pipe(
    // Only the migrations named here: DatabaseLive must not run them on its own first.
    Effect.provide(DatabaseLive.pipe(Layer.provideMerge(AppConfig.layerWith({ migrateOnStart: false }))))
  )).pipe(Command.withDescription("Applies the database migrations that have not run yet."))

const tenantName = (name: string) =>
  Schema.decodeUnknownResult(TenantName)(name).pipe(
    Result.match({
      onSuccess: Effect.succeed,
      onFailure: () =>
        Effect.fail(
          new UsageError({ message: `tenant name ${JSON.stringify(name)}: lower-case letters, digits, - or _` })
        )
    })
  )

const tenantsCreate = Command.make("create", { name: Argument.String("name") }, ({ name }) =>
  Effect.gen(function*() {
    const keys = yield* ApiKeys
    yield* keys.createTenant(yield* tenantName(name))
    yield* Console.error(`Tenant ${name} created.`)
  }).pipe(Effect.provide(KeysLive))).pipe(Command.withDescription("Creates a tenant."))

const parseScopes = (text: string) => {
  const scopes = text.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
  const unknown = scopes.filter((s) => !(Scopes as ReadonlyArray<string>).includes(s))
  return unknown.length > 0 || scopes.length === 0
    ? Effect.fail(new UsageError({ message: `--scopes: expected a list of ${Scopes.join(", ")}` }))
    : Effect.succeed(scopes as Array<(typeof Scopes)[number]>)
}

const parseExpiry = (text: Option.Option<string>) =>
  Option.match(text, {
    onNone: () => Effect.succeed(undefined),
    onSome: (t) =>
      Effect.try({
        try: () => new Date(Date.now() + Duration.toMillis(parseDuration(t))),
        catch: () => new UsageError({ message: "--expires: expected a duration such as 30d, 12h or 90m" })
      })
  })

const keysCreate = Command.make("create", {
  tenant: Flag.String("tenant").pipe(Flag.withDescription("The tenant the key acts for")),
  scopes: Flag.String("scopes").pipe(
    Flag.withDescription("Comma-separated: records:read, records:write"),
    Flag.withDefault("records:read,records:write")
  ),
  expires: Flag.String("expires").pipe(Flag.withDescription("Lifetime, e.g. 90d"), Flag.optional),
  rateLimitRps: Flag.Finite("rate-limit-rps").pipe(
    Flag.withDescription("Requests a second for this key (default RATE_LIMIT_RPS)"),
    Flag.optional
  ),
  rateLimitBurst: Flag.Int("rate-limit-burst").pipe(
    Flag.withDescription("Burst for this key (default RATE_LIMIT_BURST)"),
    Flag.optional
  )
}, (flags) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const keys = yield* ApiKeys
    const scopes = yield* parseScopes(flags.scopes)
    const expiresAt = yield* parseExpiry(flags.expires)
    const rps = Option.getOrElse(flags.rateLimitRps, () => config.rateLimitRps)
    const burst = Option.getOrElse(flags.rateLimitBurst, () => config.rateLimitBurst)
    if (!(rps > 0) || !(burst >= 1)) {
      return yield* new UsageError({ message: "--rate-limit-rps must be above 0 and --rate-limit-burst at least 1" })
    }
    const custom = Option.isSome(flags.rateLimitRps) || Option.isSome(flags.rateLimitBurst)
    const { info, secret } = yield* keys.createKey({
      tenant: yield* tenantName(flags.tenant),
      scopes,
      expiresAt,
      rateLimit: custom ? { rps, burst } : undefined
    })
    yield* Console.log(secret)
    yield* Console.error(
      `Key ${info.id} for tenant ${info.tenant} (${info.scopes.join(", ")})` +
        `${expiresAt === undefined ? "" : `, expires ${expiresAt.toISOString()}`}. ` +
        "The key above is shown only this once."
    )
  }).pipe(Effect.provide(KeysLive))).pipe(
    Command.withDescription("Makes an API key and prints it, alone on stdout, this one time.")
  )

const row = (k: ApiKeyInfo) => [
  k.id,
  k.scopes.join(","),
  k.createdAt.toISOString(),
  k.expiresAt?.toISOString() ?? "-",
  k.revokedAt?.toISOString() ?? "-",
  k.lastUsedAt?.toISOString() ?? "-",
  k.rateLimit === null ? "default" : `${k.rateLimit.rps}/s burst ${k.rateLimit.burst}`
]

const keysList = Command.make("list", { tenant: Flag.String("tenant") }, ({ tenant }) =>
  Effect.gen(function*() {
    const keys = yield* ApiKeys
    const rows = [
      ["id", "scopes", "created", "expires", "revoked", "last used", "rate limit"],
      ...(yield* keys.listKeys(tenant)).map(row)
    ]
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)))
    yield* Console.log(rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd()).join("\n"))
  }).pipe(Effect.provide(KeysLive))).pipe(Command.withDescription("Lists a tenant's keys (never their secrets)."))

const keysRevoke = Command.make("revoke", { id: Argument.String("id") }, ({ id }) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const key = yield* (yield* ApiKeys).revokeKey(id)
    yield* Console.error(
      `Key ${key.id} of tenant ${key.tenant} revoked; servers stop accepting it within ` +
        `${Duration.format(config.authCacheTtl)} (AUTH_CACHE_TTL).`
    )
  }).pipe(Effect.provide(KeysLive))).pipe(Command.withDescription("Revokes a key by its id."))

const config = Command.make("config", {}, () =>
  Effect.gen(function*() {
    const settings = { ...(yield* AppConfig), ...(yield* logSettings) }
    for (const [name, value] of effectiveConfig(settings)) yield* Console.log(`${name}=${value}`)
  }).pipe(Effect.provide(AppConfig.layer))).pipe(
    Command.withDescription("Prints the effective configuration, secrets redacted.")
  )

const eventsTail = Command.make("tail", {
  fromBeginning: Flag.Boolean("from-beginning").pipe(
    Flag.withDescription("Start at the oldest event in the topic instead of the next one")
  ),
  stream: Flag.String("stream").pipe(Flag.withDescription("Only the events of this stream"), Flag.optional)
}, (flags) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    yield* Console.error(
      `Events of ${config.kafkaTopic} at ${config.kafkaBrokers.join(",")}` +
        `${flags.fromBeginning ? ", from the beginning" : ""}; Ctrl-C stops.`
    )
    yield* tailEvents(
      config,
      { fromBeginning: flags.fromBeginning, stream: Option.getOrUndefined(flags.stream) },
      (line) => process.stdout.write(`${line}\n`)
    )
  }).pipe(Effect.provide(AppConfig.layer))).pipe(
    Command.withDescription("Prints the events of KAFKA_TOPIC as they arrive, one line each.")
  )

const strata = Command.make("strata").pipe(
  Command.withDescription("Operates a Strata deployment."),
  Command.withSubcommands([
    migrate,
    Command.make("tenants").pipe(Command.withSubcommands([tenantsCreate])),
    Command.make("keys").pipe(Command.withSubcommands([keysCreate, keysList, keysRevoke])),
    Command.make("events").pipe(Command.withSubcommands([eventsTail])),
    config
  ])
)

Command.run(strata, { version: "0.1.0" }).pipe(
  // Parse errors were already shown with the usage; ours get one line.
  Effect.catch((error) =>
    Effect.andThen(
      CliError.isCliError(error) ? Effect.void : Console.error(`strata: ${messageOf(error)}`),
      Effect.sync(() => {
        process.exitCode = 1
      })
    )
  ),
  // Only warnings and errors from the layers; command output is the point.
  Effect.provideService(References.MinimumLogLevel, "Warn"),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)
