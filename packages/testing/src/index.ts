/**
 * Test support for the workspace's suites (README: Tests): the backend matrix,
 * the app in process or on a socket, server processes, the one problem assertion,
 * waiting, the recording event bus, the local PostgreSQL, Redis and Kafka, and
 * clusters of them (a Redis Cluster, three brokers, a primary with a replica).
 */
export * from "./Backends.ts"
export * from "./Bodies.ts"
export * from "./EventStream.ts"
export * from "./Kafka.ts"
export * from "./KeyedWriters.ts"
export * from "./Network.ts"
export * from "./OtlpReceiver.ts"
export * from "./Postgres.ts"
export * from "./Problems.ts"
export * from "./PrometheusText.ts"
export * from "./RecordingBus.ts"
export * from "./Redis.ts"
export * from "./RedisCluster.ts"
export * from "./ReplicatedPostgres.ts"
export * from "./ServerProcess.ts"
export * from "./Services.ts"
export * from "./TestApp.ts"
export * from "./Waiting.ts"
