/**
 * Circuit breaker state as a metric (README: Resilience, Operations): `strata_circuit_breaker_state`
 * with a `dependency` label, 0 closed, 1 half-open, 2 open, kept up to date
 * from the breaker's transitions for as long as the owning layer lives.
 */
import { Effect, Metric, Stream } from "effect"
import type { CircuitBreaker } from "effect/persistence"

export const breakerState = Metric.gauge("strata_circuit_breaker_state", {
  description: "Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open"
})

const LEVEL = { Closed: 0, HalfOpen: 1, Open: 2 } as const

export const trackBreaker = (dependency: string, breaker: CircuitBreaker.CircuitBreaker) => {
  const gauge = Metric.withAttributes(breakerState, { dependency })
  return Metric.update(gauge, 0).pipe(
    Effect.andThen(
      breaker.transitions.pipe(Stream.runForEach((transition) => Metric.update(gauge, LEVEL[transition.to])))
    ),
    Effect.forkScoped
  )
}
