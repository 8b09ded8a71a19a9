/**
 * What the other workspace packages use of the server: the client's tests serve
 * the app in process; the bench starts the server and its CLI as processes,
 * seeds tables with the server's partitions and ids, and names record cache keys;
 * the deploy tests serve metrics from real stores and check probes against the routes.
 */
import { fileURLToPath } from "node:url"

export { AppRoutes, layerStorage, layerStorageMemory, withServices } from "./App.ts"
export { ApiKeys } from "./auth/ApiKeys.ts"
export type { EventBus } from "./events/EventBus.ts"
export { CacheStore } from "./platform/cache/CacheStore.ts"
export { AppConfig } from "./platform/config/AppConfig.ts"
export { PartitionInterval } from "./platform/config/DatabaseConfig.ts"
export { methodsOf, routeOf } from "./platform/http/RouteTable.ts"
export { layerConnection } from "./platform/sql/Connection.ts"
export { DbPolicy } from "./platform/sql/DbPolicy.ts"
export { nextPartition, type PartitionBounds, partitionFor } from "./records/Partitions.ts"
export { recordCacheKey } from "./records/RecordCache.ts"
export { makeRecordId } from "./records/RecordId.ts"

/** The server's program, for `node <serverMain>` (it reads the environment, as `pnpm start`). */
export const serverMain: string = fileURLToPath(new URL("./main.ts", import.meta.url))
/** The command-line tool's program, for `node <cliMain> <command>` (as `pnpm strata`). */
export const cliMain: string = fileURLToPath(new URL("./cli/main.ts", import.meta.url))
