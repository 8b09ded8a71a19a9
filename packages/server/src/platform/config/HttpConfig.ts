/** The HTTP server: where it listens, what a request may carry, how long it may take, how it stops. */
import { Config, Context, Duration, Layer } from "effect"
import { type InvalidConfig, readAll, type Values } from "./Read.ts"
import { bytes, duration, intBetween } from "./Units.ts"

export const httpFields = {
  // Read again before the server starts, to fork (runtime/Workers.ts); here so it is checked and shown.
  workers: intBetween("WORKERS", 1, 64).pipe(Config.withDefault(1)),
  host: Config.String("HOST").pipe(Config.withDefault("0.0.0.0")),
  port: intBetween("PORT", 1, 65535).pipe(Config.withDefault(8080)),
  maxBodyBytes: bytes("MAX_BODY_BYTES").pipe(Config.withDefault(1024 * 1024)),
  maxRecordBytes: bytes("MAX_RECORD_BYTES").pipe(Config.withDefault(64 * 1024)),
  // Node's own default; the request line (path and query string) counts too.
  maxHeaderBytes: bytes("MAX_HEADER_BYTES").pipe(Config.withDefault(16 * 1024)),
  // PostgreSQL takes at most 65,535 parameters per statement: 6 per record.
  maxBatch: intBetween("MAX_BATCH", 1, 10_000).pipe(Config.withDefault(1000)),
  // POST /data/bulk: the body counted decompressed, and its records.
  maxBulkBytes: bytes("MAX_BULK_BYTES").pipe(Config.withDefault(64 * 1024 * 1024)),
  maxBulkRecords: intBetween("MAX_BULK_RECORDS", 1, 10_000_000).pipe(Config.withDefault(500_000)),
  shutdownDelay: duration("SHUTDOWN_DELAY").pipe(Config.withDefault(Duration.seconds(5))),
  shutdownTimeout: duration("SHUTDOWN_TIMEOUT").pipe(Config.withDefault(Duration.seconds(20))),
  requestTimeout: duration("REQUEST_TIMEOUT").pipe(Config.withDefault(Duration.seconds(10))),
  maxInFlight: intBetween("MAX_IN_FLIGHT", 1, 1_000_000).pipe(Config.withDefault(1000)),
  // How many rows a filtered page reads at most (README: Filters).
  filterScanBudget: intBetween("FILTER_SCAN_BUDGET", 1, 10_000_000).pipe(Config.withDefault(10_000))
}

export type HttpSettings = Values<typeof httpFields>

export class HttpConfig extends Context.Service<HttpConfig, HttpSettings>()("strata/config/HttpConfig") {
  static readonly layer: Layer.Layer<HttpConfig, InvalidConfig> = Layer.effect(HttpConfig, readAll(httpFields))
}
