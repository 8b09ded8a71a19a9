/**
 * The command-line tool, `pnpm strata <command>`: migrations, tenants, API keys,
 * the effective configuration and a live view of the events in Kafka. It reads the same environment as the server
 * and uses the same Db layer, so it works on whatever database the server uses.
 *
 * Output meant for scripts (a new key) goes alone to stdout; everything else a
 * person should read goes to stderr. Exit code 1 on any error, 78 (EX_CONFIG)
 * on a bad environment variable, with one line for each.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Scopes } from "@strata/domain"
import { Console, Duration, Effect, Layer, Option, References, Schema } from "effect"
import { Argument, CliError, Command, Flag } from "effect/cli"
import * as Admin from "../admin/Administration.ts"
import { type ApiKeyInfo, ApiKeys } from "../auth/ApiKeys.ts"
import { tailEvents } from "../events/Tail.ts"
import { AppConfig } from "../platform/config/AppConfig.ts"
import { CacheConfig } from "../platform/config/CacheConfig.ts"
import { DatabaseConfig } from "../platform/config/DatabaseConfig.ts"
import { effectiveConfig } from "../platform/config/Describe.ts"
import { KafkaConfig } from "../platform/config/KafkaConfig.ts"
import { EX_CONFIG, InvalidConfig } from "../platform/config/Read.ts"
import { layerConnection } from "../platform/sql/Connection.ts"
import { DbPolicy } from "../platform/sql/DbPolicy.ts"
import { runMigrations } from "../platform/sql/Migrations.ts"

/** A message for the person at the terminal; the command fails with exit code 1. */
class UsageError extends Schema.TaggedError<UsageError>()("UsageError", { message: Schema.String }) {}

const messageOf = (error: unknown) => error instanceof Error ? error.message : String(error)

const Database = layerConnection.pipe(Layer.provideMerge(AppConfig.layer))
const layerKeys = ApiKeys.layerPg.pipe(Layer.provide(DbPolicy.layer), Layer.provideMerge(Database))

const migrate = Command.make("migrate", {}, () =>
  Effect.gen(function*() {
    const applied = yield* runMigrations
    yield* Console.error(
      applied.length === 0
        ? "Schema is up to date."
        : `Applied: ${applied.map(([id, name]) => `${id}_${name}`).join(", ")}`
    )
  }).pipe(
    // Only the migrations named here: layerConnection must not run them on its own first.
    Effect.provide(layerConnection.pipe(
      Layer.provide(Layer.effect(
        DatabaseConfig,
        Effect.gen(function*() {
          return { ...(yield* DatabaseConfig), migrateOnStart: false }
        })
      )),
      Layer.provide(AppConfig.layer)
    ))
  )).pipe(Command.withDescription("Applies the database migrations that have not run yet."))

/** The shared rules' refusals, worded for the command line. */
const FLAG_OF: Record<string, string> = {
  scopes: "--scopes: ",
  expires: "--expires: ",
  rateLimit: "--rate-limit-rps / --rate-limit-burst: "
}
const asUsage = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, Exclude<E, Admin.AdminInputError> | UsageError, R> =>
  Effect.catchIf(
    effect,
    (e): e is Extract<E, Admin.AdminInputError> => e instanceof Admin.AdminInputError,
    (e) => Effect.fail(new UsageError({ message: `${FLAG_OF[e.field] ?? ""}${e.message}` }))
  ) as Effect.Effect<A, Exclude<E, Admin.AdminInputError> | UsageError, R>

const tenantsCreate = Command.make("create", { name: Argument.String("name") }, ({ name }) =>
  Effect.gen(function*() {
    yield* asUsage(Admin.createTenant(name))
    yield* Console.error(`Tenant ${name} created.`)
  }).pipe(Effect.provide(layerKeys))).pipe(Command.withDescription("Creates a tenant."))

const tenantsList = Command.make("list", {}, () =>
  Effect.gen(function*() {
    for (const t of yield* Admin.listTenants) yield* Console.log(`${t.name}  ${t.createdAt.toISOString()}`)
  }).pipe(Effect.provide(layerKeys))).pipe(Command.withDescription("Lists the tenants."))

const keysCreate = Command.make("create", {
  tenant: Flag.String("tenant").pipe(Flag.withDescription("The tenant the key acts for")),
  scopes: Flag.String("scopes").pipe(
    Flag.withDescription(`Comma-separated: ${Scopes.join(", ")}`),
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
    const { info, secret } = yield* asUsage(Admin.createKey({
      tenant: flags.tenant,
      scopes: flags.scopes,
      expires: Option.getOrUndefined(flags.expires),
      rateLimitRps: Option.getOrUndefined(flags.rateLimitRps),
      rateLimitBurst: Option.getOrUndefined(flags.rateLimitBurst)
    }))
    yield* Console.log(secret)
    yield* Console.error(
      `Key ${info.id} for tenant ${info.tenant} (${info.scopes.join(", ")})` +
        `${info.expiresAt === null ? "" : `, expires ${info.expiresAt.toISOString()}`}. ` +
        "The key above is shown only this once."
    )
  }).pipe(Effect.provide(layerKeys))).pipe(
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
    const rows = [
      ["id", "scopes", "created", "expires", "revoked", "last used", "rate limit"],
      ...(yield* Admin.listKeys(tenant)).map(row)
    ]
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)))
    yield* Console.log(rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd()).join("\n"))
  }).pipe(Effect.provide(layerKeys))).pipe(Command.withDescription("Lists a tenant's keys (never their secrets)."))

const keysRevoke = Command.make("revoke", { id: Argument.String("id") }, ({ id }) =>
  Effect.gen(function*() {
    const config = yield* CacheConfig
    const key = yield* Admin.revokeKey(id)
    yield* Console.error(
      `Key ${key.id} of tenant ${key.tenant} revoked; servers stop accepting it within ` +
        `${Duration.format(config.authCacheTtl)} (AUTH_CACHE_TTL).`
    )
  }).pipe(Effect.provide(layerKeys))).pipe(Command.withDescription("Revokes a key by its id."))

const config = Command.make("config", {}, () =>
  Effect.gen(function*() {
    for (const [name, value] of effectiveConfig(yield* AppConfig)) yield* Console.log(`${name}=${value}`)
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
    const config = yield* KafkaConfig
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
    Command.make("tenants").pipe(Command.withSubcommands([tenantsCreate, tenantsList])),
    Command.make("keys").pipe(Command.withSubcommands([keysCreate, keysList, keysRevoke])),
    Command.make("events").pipe(Command.withSubcommands([eventsTail])),
    config
  ])
)

Command.run(strata, { version: "0.1.0" }).pipe(
  // Parse errors were already shown with the usage; ours get one line, a bad
  // configuration one line per variable.
  Effect.catch((error) =>
    Effect.andThen(
      CliError.isCliError(error)
        ? Effect.void
        : Console.error(error instanceof InvalidConfig ? error.message : `strata: ${messageOf(error)}`),
      Effect.sync(() => {
        process.exitCode = error instanceof InvalidConfig ? EX_CONFIG : 1
      })
    )
  ),
  // Only warnings and errors from the layers; command output is the point.
  Effect.provideService(References.MinimumLogLevel, "Warn"),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)
