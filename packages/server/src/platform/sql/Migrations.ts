/**
 * Versioned schema migrations. They run through the SQL migrator (which takes an
 * exclusive lock, so replicas starting at once are safe), from the command-line
 * tool and, with MIGRATE_ON_START, at startup. The same SQL runs on PostgreSQL
 * and on the embedded PGlite.
 */
import { Effect } from "effect"
import { Migrator, SqlClient } from "effect/sql"

export const migrations = Migrator.fromRecord({
  "0001_records_and_outbox": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // Range-partitioned on occurred_at; the partitions are made by the Db layer.
    // The primary key leads with id so a lookup by id (whose UUIDv7 prefix
    // names occurred_at, hence the partition) is one index probe.
    yield* sql`
      CREATE TABLE records (
        tenant_id text NOT NULL,
        id uuid NOT NULL,
        stream text NOT NULL,
        key text,
        occurred_at timestamptz NOT NULL,
        ingested_at timestamptz NOT NULL DEFAULT now(),
        data jsonb NOT NULL,
        PRIMARY KEY (id, occurred_at)
      ) PARTITION BY RANGE (occurred_at)`
    yield* sql`CREATE INDEX records_stream_time ON records (tenant_id, stream, occurred_at, id)`
    yield* sql`CREATE INDEX records_stream_key_time ON records (tenant_id, stream, key, occurred_at, id)`
    // One row per stored record, written in the record's transaction (README: Events).
    yield* sql`
      CREATE TABLE outbox (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id text NOT NULL,
        record_id uuid NOT NULL,
        message_key text NOT NULL,
        payload jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )`
    // Secrets every replica must share, e.g. the key that signs page cursors.
    yield* sql`CREATE TABLE strata_secrets (name text PRIMARY KEY, value text NOT NULL)`
  }),
  "0002_idempotency_keys": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // status/body stay NULL while the first request runs (409 for the others).
    yield* sql`
      CREATE TABLE idempotency_keys (
        tenant_id text NOT NULL,
        key text NOT NULL,
        request_hash text NOT NULL,
        status int,
        body text,
        location text,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, key)
      )`
    yield* sql`CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at)`
  }),
  "0003_outbox_traceparent": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // The W3C trace context of the request that stored the record, for the event headers.
    yield* sql`ALTER TABLE outbox ADD COLUMN traceparent text`
  }),
  "0004_tenants_and_api_keys": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE tenants (name text PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now())`
    // Only the SHA-256 of a key is kept; a request finds its key by that hash.
    yield* sql`
      CREATE TABLE api_keys (
        id text PRIMARY KEY,
        tenant_id text NOT NULL REFERENCES tenants (name),
        hash text NOT NULL UNIQUE,
        scopes text[] NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz,
        revoked_at timestamptz,
        last_used_at timestamptz,
        rate_limit_rps double precision,
        rate_limit_burst int
      )`
    yield* sql`CREATE INDEX api_keys_tenant ON api_keys (tenant_id)`
  }),
  "0005_outbox_relay_lease": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // The one lease of the outbox relay (README: Events): the replica named in `holder`
    // publishes until `expires_at`; it is taken and checked by single statements,
    // so no transaction stays open while events are published.
    yield* sql`
      CREATE TABLE outbox_relay_lease (
        id int PRIMARY KEY CHECK (id = 1),
        holder text,
        expires_at timestamptz NOT NULL
      )`
    yield* sql`INSERT INTO outbox_relay_lease (id, holder, expires_at) VALUES (1, NULL, '-infinity')`
  }),
  "0006_outbox_without_payload": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // An event is its record: the relay reads the record's row when it publishes
    // instead of a second copy written with it (half the bytes and WAL per write).
    // `occurred_at` names the record's partition. Rows written before keep their payload.
    yield* sql`ALTER TABLE outbox ADD COLUMN occurred_at timestamptz`
    yield* sql`ALTER TABLE outbox ALTER COLUMN payload DROP NOT NULL`
  }),
  "0007_stream_schemas": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // The version of the stream's schema a record was validated against; NULL: none.
    yield* sql`ALTER TABLE records ADD COLUMN schema_version int`
    // Immutable versions 1, 2, 3… per tenant and stream: the primary key is
    // what keeps concurrent registrations from taking one number twice.
    yield* sql`
      CREATE TABLE stream_schemas (
        tenant_id text NOT NULL,
        stream text NOT NULL,
        version int NOT NULL CHECK (version > 0),
        schema jsonb NOT NULL,
        compatibility text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, stream, version)
      )`
  }),
  "0008_outbox_event_headers": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // What an event's headers name besides its key, written with it: the relay then needs
    // no read of the record when this process still holds its text (README: Events).
    // Rows written before have NULLs here and are read with their record.
    yield* sql`ALTER TABLE outbox ADD COLUMN stream text, ADD COLUMN schema_version int`
  }),
  "0009_change_feed": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // The change feed's log (README: Change feed), one row per record, written in the
    // record's statement: the writing transaction's id and the record's place in it
    // are its position. Readers serve only rows whose transaction is older than
    // every transaction still running (the snapshot's xmin), in (xid, n) order, so
    // a transaction that took its id early and commits late is never skipped.
    // Not partitioned like `records`: a tail reads the end of one index, whatever
    // the number of record partitions; the record is read by id (its partition).
    yield* sql`
      CREATE TABLE changes (
        tenant_id text NOT NULL,
        xid xid8 NOT NULL,
        n int NOT NULL,
        record_id uuid NOT NULL,
        stream text NOT NULL,
        PRIMARY KEY (tenant_id, xid, n)
      )`
    yield* sql`CREATE INDEX changes_stream ON changes (tenant_id, stream, xid, n)`
    // Retention (FEED_RETENTION): the horizon noted at each maintenance pass, so a
    // time can be turned into a transaction id; and the oldest position still kept.
    yield* sql`CREATE TABLE change_marks (at timestamptz PRIMARY KEY, xid xid8 NOT NULL)`
    yield* sql`
      CREATE TABLE change_retention (
        id int PRIMARY KEY CHECK (id = 1),
        earliest xid8 NOT NULL
      )`
    yield* sql`INSERT INTO change_retention (id, earliest) VALUES (1, '1')`
    // A replayed write answer carries its position too.
    yield* sql`ALTER TABLE idempotency_keys ADD COLUMN position text`
  }),
  "0010_stream_indexes": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // The paths a tenant declared to filter on (README: Declared indexes), each an
    // index on `records` built partition by partition: its state and progress.
    yield* sql`
      CREATE TABLE stream_indexes (
        tenant_id text NOT NULL,
        stream text NOT NULL,
        path text[] NOT NULL,
        kind text NOT NULL,
        name text NOT NULL UNIQUE,
        state text NOT NULL,
        built int NOT NULL DEFAULT 0,
        partitions int NOT NULL DEFAULT 0,
        declared_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, stream, path, kind)
      )`
  })
})

/** Runs every migration not yet applied; answers the ones it ran. */
export const runMigrations = Migrator.make({})({ loader: migrations, table: "strata_migrations" })
