/**
 * Why a database call failed (DbError's reason) and what the policy does with
 * each reason: which calls it retries, which it answers with a 503, which trip
 * the breaker.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Duration, Effect, Exit, Layer, Option, Result } from "effect"
import { SqlError } from "effect/sql"
import { TestClock } from "effect/testing"
import { AppConfig } from "../../src/platform/config/AppConfig.ts"
import { databaseProblem } from "../../src/platform/http/Problems.ts"
import { CircuitOpen, DbError, fromSqlError, isDbError, Timeout } from "../../src/platform/sql/DbError.ts"
import { type CallKind, DbPolicy } from "../../src/platform/sql/DbPolicy.ts"

const sqlError = (reason: SqlError.SqlErrorReason) => new SqlError.SqlError({ reason })
const fields = { cause: new Error("from the driver"), message: "it failed" }
/** A server error as the driver keeps it: an Error with the fields PostgreSQL sent, its SQLSTATE among them. */
const serverSaid = (code: string, message: string) => Object.assign(new Error(message), { code, severity: "FATAL" })

describe("DbError", () => {
  it.each(
    [
      [new SqlError.ConnectionError(fields), "ConnectionLost", true, false],
      [new SqlError.DeadlockError(fields), "Deadlock", true, true],
      [new SqlError.SerializationError(fields), "SerializationFailure", true, true],
      [new SqlError.LockTimeoutError(fields), "Timeout", true, false],
      [new SqlError.StatementTimeoutError(fields), "Timeout", true, false],
      [new SqlError.SqlSyntaxError(fields), "StatementFailed", false, false],
      [new SqlError.UniqueViolation({ ...fields, constraint: "records_pkey" }), "StatementFailed", false, false],
      [new SqlError.AuthenticationError(fields), "StatementFailed", false, false],
      [new SqlError.UnknownError(fields), "StatementFailed", false, false],
      // What PostgreSQL answers every connection for a while after a crash, and when it is shutting down
      // or full: the driver knows none of them, and each was a 500 in `bench chaos` (pg-stop).
      [
        new SqlError.UnknownError({ ...fields, cause: serverSaid("57P03", "the database system is starting up") }),
        "ConnectionLost",
        true,
        false
      ],
      [
        new SqlError.UnknownError({
          ...fields,
          cause: serverSaid("57P01", "terminating connection due to administrator command")
        }),
        "ConnectionLost",
        true,
        false
      ],
      [
        new SqlError.UnknownError({ ...fields, cause: serverSaid("53300", "sorry, too many clients already") }),
        "ConnectionLost",
        true,
        false
      ],
      [
        new SqlError.UnknownError({ ...fields, cause: serverSaid("22P02", "invalid input syntax") }),
        "StatementFailed",
        false,
        false
      ]
    ] as const
  )("keeps the reason of a driver's %s: %s", (reason, expected, transient, rolledBack) => {
    const error = fromSqlError(sqlError(reason))
    expect(error.reason._tag).toBe(expected)
    expect(error.transient).toBe(transient)
    expect(error.rolledBack).toBe(rolledBack)
    expect(databaseProblem(error)?.status).toBe(transient ? 503 : undefined)
  })

  it("is transient for a timeout and an open circuit, and nothing else is", () => {
    expect(new DbError({ reason: new Timeout(), message: "slow" }).transient).toBe(true)
    expect(new DbError({ reason: new CircuitOpen(), message: "open" }).transient).toBe(true)
    expect(isDbError(new Error("not a database failure"))).toBe(false)
  })

  it("has reasons that Effect.catchReason matches by their tag", () => {
    const failed = Effect.fail(new DbError({ reason: new Timeout(), message: "slow" }))
    const caught = failed.pipe(Effect.catchReason("DbError", "Timeout", () => Effect.succeed("timed out")))
    expect(Effect.runSync(Effect.result(caught))).toEqual(Result.succeed("timed out"))
    const other = failed.pipe(Effect.catchReason("DbError", "Deadlock", () => Effect.succeed("deadlock")))
    expect(Result.isFailure(Effect.runSync(Effect.result(other)))).toBe(true)
  })
})

const policy = (settings: Partial<AppConfig["Service"]> = {}) =>
  DbPolicy.layer.pipe(
    Layer.provide(AppConfig.layerWith({ dbRetries: 3, dbRetryBase: Duration.millis(1), ...settings }))
  )

/** A call that fails with `reason` `failures` times, then answers; counts its attempts. */
const flaky = (reason: () => SqlError.SqlErrorReason, failures: number) => {
  const attempts = { n: 0 }
  const call = Effect.suspend(() =>
    ++attempts.n <= failures ? Effect.fail(sqlError(reason())) : Effect.succeed("answered")
  )
  return { attempts, call }
}

/** The reason of the DbError a call failed with. */
const reasonOf = (exit: Exit.Exit<unknown, DbError>) =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.findErrorOption(exit.cause))?.reason._tag : undefined

const run = (kind: CallKind, call: Effect.Effect<string, SqlError.SqlError>) =>
  Effect.flatMap(DbPolicy, (p) => Effect.exit(p.run("Db.test", kind, call)))

describe("DbPolicy", () => {
  it.live("retries a write the database rolled back (deadlock)", () =>
    Effect.gen(function*() {
      const { attempts, call } = flaky(() => new SqlError.DeadlockError(fields), 2)
      expect(yield* run("write", call)).toEqual(Exit.succeed("answered"))
      expect(attempts.n).toBe(3)
    }).pipe(Effect.provide(policy())))

  it.live("does not retry a write after a lost connection, which may hide a commit", () =>
    Effect.gen(function*() {
      const { attempts, call } = flaky(() => new SqlError.ConnectionError(fields), 1)
      const exit = yield* run("write", call)
      expect(attempts.n).toBe(1)
      expect(reasonOf(exit)).toBe("ConnectionLost")
    }).pipe(Effect.provide(policy())))

  it.live("retries an idempotent call after a lost connection", () =>
    Effect.gen(function*() {
      const { attempts, call } = flaky(() => new SqlError.ConnectionError(fields), 2)
      expect(yield* run("idempotent", call)).toEqual(Exit.succeed("answered"))
      expect(attempts.n).toBe(3)
    }).pipe(Effect.provide(policy())))

  it.live("never retries a failed statement, and a failed statement does not open the breaker", () =>
    Effect.gen(function*() {
      const { attempts, call } = flaky(() => new SqlError.SqlSyntaxError(fields), 10)
      for (let i = 0; i < 4; i++) yield* run("idempotent", call)
      expect(attempts.n).toBe(4)
      const exit = yield* run("idempotent", call)
      expect(reasonOf(exit)).toBe("StatementFailed")
    }).pipe(Effect.provide(policy({ dbBreakerFailures: 2 }))))

  it.live("opens the breaker after consecutive transient failures: then calls fail at once as CircuitOpen", () =>
    Effect.gen(function*() {
      const { attempts, call } = flaky(() => new SqlError.ConnectionError(fields), 100)
      yield* run("write", call)
      yield* run("write", call)
      const before = attempts.n
      const exit = yield* run("write", call)
      expect(attempts.n).toBe(before) // not even tried
      expect(reasonOf(exit)).toBe("CircuitOpen")
    }).pipe(Effect.provide(policy({ dbBreakerFailures: 2 }))))

  it.effect("probes a database that stays down at least every 5 s, so it is used again within 5 s of its return", () =>
    Effect.gen(function*() {
      let down = true
      const attempts = { n: 0 }
      const call = Effect.suspend(() => {
        attempts.n++
        return down ? Effect.fail(sqlError(new SqlError.ConnectionError(fields))) : Effect.succeed("answered")
      })
      const tick = TestClock.adjust(Duration.millis(100))
      // Down for a minute: the breaker opens, and its probes fail while the cool-down grows.
      for (let t = 0; t < 60_000; t += 100) {
        yield* run("write", call)
        yield* tick
      }
      // Back just after a probe failed: the longest wait there is for the next one.
      const before = attempts.n
      while (attempts.n === before) {
        yield* run("write", call)
        yield* tick
      }
      down = false
      let waited = 0
      while (Exit.isFailure(yield* run("write", call))) {
        yield* tick
        waited += 100
      }
      expect(waited).toBeLessThanOrEqual(5_000)
    }).pipe(Effect.provide(policy({ dbBreakerFailures: 2 }))))

  it.live("gives up on a slow call after DB_TIMEOUT, as a Timeout", () =>
    Effect.gen(function*() {
      const exit = yield* run("write", Effect.as(Effect.sleep("1 second"), "late"))
      expect(reasonOf(exit)).toBe("Timeout")
    }).pipe(Effect.provide(policy({ dbTimeout: Duration.millis(20) }))))

  it.live("gives a call of many rows' work that many DB_TIMEOUTs (a bulk write), and no more", () =>
    Effect.gen(function*() {
      const slow = Effect.as(Effect.sleep("150 millis"), "done")
      const sized = (size: number) =>
        Effect.flatMap(DbPolicy, (p) => Effect.exit(p.run("Db.bulk", "write", slow, size)))
      expect(reasonOf(yield* sized(1))).toBe("Timeout")
      expect(yield* sized(10)).toEqual(Exit.succeed("done"))
      const late = yield* Effect.flatMap(
        DbPolicy,
        (p) => Effect.exit(p.run("Db.bulk", "write", Effect.as(Effect.sleep("2 seconds"), "late"), 10))
      )
      expect(reasonOf(late)).toBe("Timeout")
    }).pipe(Effect.provide(policy({ dbTimeout: Duration.millis(50) }))))
})
