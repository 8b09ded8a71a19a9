/**
 * What the other workspace packages use of the server: the client's tests serve
 * the app in process; the bench starts the server and its CLI as processes,
 * seeds tables with the server's partitions and ids, and names record cache keys.
 */
import { fileURLToPath } from "node:url"

export { AppRoutes, layerStorageMemory, withServices } from "./App.ts"
export { ApiKeys } from "./auth/ApiKeys.ts"
export { AppConfig } from "./platform/config/AppConfig.ts"
export { PartitionInterval } from "./platform/config/DatabaseConfig.ts"
export { nextPartition, type PartitionBounds, partitionFor } from "./records/Partitions.ts"
export { recordCacheKey } from "./records/RecordCache.ts"
export { makeRecordId } from "./records/RecordId.ts"

/** The server's program, for `node <serverMain>` (it reads the environment, as `pnpm start`). */
export const serverMain: string = fileURLToPath(new URL("./main.ts", import.meta.url))
/** The command-line tool's program, for `node <cliMain> <command>` (as `pnpm strata`). */
export const cliMain: string = fileURLToPath(new URL("./cli/main.ts", import.meta.url))
