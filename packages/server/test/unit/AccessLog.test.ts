/**
 * The access line (platform/observability/AccessLog.ts): written without a
 * fiber, it must read exactly as the JSON logger writes the same line.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Logger, Tracer } from "effect"
import { accessJson, logAccess } from "../../src/platform/observability/AccessLog.ts"
import type { RequestOutcome } from "../../src/platform/observability/HttpMetrics.ts"
import { jsonLine } from "../../src/platform/observability/Logging.ts"

const outcome: RequestOutcome = {
  method: "GET",
  route: "/data/{id}",
  status: 200,
  seconds: 0.0012345,
  requestId: "req-9"
}

/** What the JSON logger writes for `effect`'s one line. */
const loggedLine = (effect: Effect.Effect<void>) => {
  const lines: Array<string> = []
  const capture = Logger.map(jsonLine, (line) => void lines.push(line))
  Effect.runSync(effect.pipe(Effect.provide(Logger.layer([capture]))))
  return JSON.parse(lines[0]) as Record<string, unknown>
}

describe("accessJson", () => {
  it("is the JSON logger's line for the same request, field for field and in order", () => {
    const direct = JSON.parse(accessJson(outcome, undefined, new Date())) as Record<string, unknown>
    const logged = loggedLine(logAccess(outcome))
    expect(Object.keys(direct)).toEqual(Object.keys(logged))
    expect({ ...direct, time: "" }).toEqual({ ...logged, time: "" })
    expect(direct).toMatchObject({ level: "info", message: "GET /data/{id} 200", durationMs: 1.23 })
  })

  it("carries the trace and span of the caller's span", () => {
    const caller = Tracer.externalSpan({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7" })
    const direct = JSON.parse(accessJson(outcome, caller, new Date())) as Record<string, unknown>
    const logged = loggedLine(Effect.withParentSpan(logAccess(outcome), caller))
    expect(direct).toMatchObject({ traceId: caller.traceId, spanId: caller.spanId })
    expect(Object.keys(direct)).toEqual(Object.keys(logged))
  })
})
