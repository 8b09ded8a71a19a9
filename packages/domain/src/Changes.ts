/**
 * The change feed (README: Change feed): every record of a tenant in commit
 * order, each with its position, paged as JSON or tailed as Server-Sent Events.
 */
import { Schema, SchemaTransformation } from "effect"
import { StoredRecord, StreamName } from "./Record.ts"

/** A feed position as clients pass it back: opaque, at most 64 characters, or `earliest` / `now`. */
export const PositionText = Schema.String.check(
  Schema.isMaxLength(64, { message: "is not a position we issued" })
)

/** One change: the record as `GET /data/{id}` answers it, and its position in the feed. */
export const Change = Schema.Struct({
  ...StoredRecord.fields,
  position: Schema.String.annotate({ description: "The change's position: pass it as after= to go on after it." })
}).annotate({ identifier: "Change" })
export type Change = typeof Change.Type

export const ChangePage = Schema.Struct({
  changes: Schema.Array(Change),
  nextPosition: Schema.String.annotate({
    description:
      "Where the next page starts; present on every page, an empty one too (then it is the feed's head, so a filtered or quiet feed does not scan again what it passed)."
  })
}).annotate({ identifier: "ChangePage" })
export type ChangePage = typeof ChangePage.Type

/** How many changes a page holds: a whole number from 1 to 1000 in the query string. */
const ChangeLimit = Schema.String.check(
  Schema.isPattern(/^(?:[1-9]\d{0,2}|1000)$/, { message: "must be a whole number from 1 to 1000" }),
  Schema.isMaxLength(4)
).annotate({ description: "How many changes a page holds: 1 to 1000; 100 when absent." }).pipe(
  Schema.decodeTo(
    Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1000 })),
    SchemaTransformation.numberFromString
  )
)

const After = PositionText.annotate({
  description:
    "Start after this position: a position from a change, a page's nextPosition, a write's Strata-Position or a list's; `earliest` (the oldest kept, the default) or `now` (the head). With text/event-stream, a Last-Event-ID header wins over it."
})

/** The query of `GET /streams/{stream}/changes`. */
export const StreamChangesQuery = Schema.Struct({
  after: Schema.optionalKey(After),
  limit: Schema.optionalKey(ChangeLimit)
})
export type StreamChangesQuery = typeof StreamChangesQuery.Type

/** The query of `GET /changes`: optionally only some streams (`stream=a&stream=b`). */
export const ChangesQuery = Schema.Struct({
  after: Schema.optionalKey(After),
  limit: Schema.optionalKey(ChangeLimit),
  stream: Schema.optionalKey(
    Schema.Union([StreamName, Schema.Array(StreamName).check(Schema.isMaxLength(16))]).annotate({
      description: "Only these streams (repeat the parameter, up to 16); every stream of the tenant when absent."
    })
  )
})
export type ChangesQuery = typeof ChangesQuery.Type

/** The headers a feed request may send. */
export const ChangesHeaders = Schema.Struct({
  accept: Schema.optionalKey(Schema.String.annotate({
    description: "text/event-stream: tail the feed live as Server-Sent Events instead of one JSON page."
  })),
  "last-event-id": Schema.optionalKey(PositionText.annotate({
    description: "With text/event-stream: the id of the last event received; the stream resumes after it."
  })),
  "strata-position": Schema.optionalKey(PositionText.annotate({
    description: "Read your writes: the page waits until it can include everything up to this position."
  }))
})
