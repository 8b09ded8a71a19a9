/**
 * Where a read runs (README: Read replicas): on the primary, unless
 * ReadReplicas.read placed it on a replica for the fiber that runs it. The
 * stores' read statements take their client from here (`readClient`), and
 * DbPolicy gives a replica's calls their own policy: a short timeout, no
 * retries, no breaker, since a replica that fails sends the read to the primary.
 */
import type { PgClient } from "@effect/sql-pg"
import { Context, Effect } from "effect"

export interface Replica {
  /** `replica-1`, `replica-2`… in DATABASE_READ_URL's order: its name in metrics and logs. */
  readonly name: string
  readonly sql: PgClient.PgClient
}

export const ReadTarget = Context.Reference<Replica | undefined>("strata/sql/ReadTarget", {
  defaultValue: () => undefined
})

/** The client a read statement runs on: the target replica's, or `primary`. */
export const readClient = (primary: PgClient.PgClient): Effect.Effect<PgClient.PgClient> =>
  Effect.withFiber((fiber) => Effect.succeed(fiber.getRef(ReadTarget)?.sql ?? primary))

/** Whether this fiber's reads run on a replica. */
export const onReplica: Effect.Effect<boolean> = Effect.withFiber((fiber) =>
  Effect.succeed(fiber.getRef(ReadTarget) !== undefined)
)
