/**
 * What the other workspace packages use of the server: the client's tests serve
 * the app in process; the bench starts the server and its CLI as processes,
 * seeds tables with the server's partitions and ids, and names record cache keys;
 * the deploy tests serve metrics from real stores and check probes against the routes;
 * @strata/testing builds the app from its layers (storage, migrations, tracing, the
 * Node server with the hot routes in front) and records events in place of Kafka.
 */
import { fileURLToPath } from "node:url"

export { AppRoutes, layerServer, layerStorage, layerStorageMemory, type Storage, withServices } from "./App.ts"
export { ApiKeys, type RateLimitOverride } from "./auth/ApiKeys.ts"
export { EventBus, EventBusError, type KafkaMessage, toKafkaMessage } from "./events/EventBus.ts"
export { CacheStore } from "./platform/cache/CacheStore.ts"
export { AppConfig, type ConfigServices, type Settings } from "./platform/config/AppConfig.ts"
export { PartitionInterval } from "./platform/config/DatabaseConfig.ts"
export { makeNodeServer } from "./platform/http/NodeServer.ts"
export { methodsOf, routeOf } from "./platform/http/RouteTable.ts"
export { layerTracing } from "./platform/observability/Tracing.ts"
export { layerConnection, startEmbedded } from "./platform/sql/Connection.ts"
export { DbPolicy } from "./platform/sql/DbPolicy.ts"
export { runMigrations } from "./platform/sql/Migrations.ts"
export { HotRoutes } from "./records/HotRoutes.ts"
export { nextPartition, type PartitionBounds, partitionFor } from "./records/Partitions.ts"
export { recordCacheKey } from "./records/RecordCache.ts"
export { makeRecordId } from "./records/RecordId.ts"

/** The server's program, for `node <serverNodeFlags> <serverMain>` (it reads the environment, as `pnpm start`). */
export const serverMain: string = fileURLToPath(new URL("./main.ts", import.meta.url))
/**
 * Node flags the server runs with wherever its own scripts start it (scripts/start,
 * the image's command): a 32 MiB semi-space, which a memory limit would
 * otherwise make small (docs/PERFORMANCE.md, "The young generation").
 */
export const serverNodeFlags: ReadonlyArray<string> = ["--max-semi-space-size=32"]
/** The command-line tool's program, for `node <cliMain> <command>` (as `pnpm strata`). */
export const cliMain: string = fileURLToPath(new URL("./cli/main.ts", import.meta.url))
