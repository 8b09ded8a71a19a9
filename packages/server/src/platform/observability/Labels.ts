/**
 * One metric object per label set, made once and reused: every label here takes
 * a small fixed set of values. Not `Metric.withAttributes`: it adds the labels
 * to the context on every update, and when series of one metric alternate (GET
 * and POST, hits and misses) it rebuilds the shared metric's key each time (a
 * sort and a JSON.stringify), about ten times the cost of an update of a
 * metric made with its own attributes.
 */
import type { Metric } from "effect"

export const labelled = <Input, State>(
  make: (attributes: Readonly<Record<string, string>>) => Metric.Metric<Input, State>
) => {
  const tagged = new Map<string, Metric.Metric<Input, State>>()
  return (attributes: Readonly<Record<string, string>>): Metric.Metric<Input, State> => {
    // Call sites pass the same keys in the same order, so the values identify the set.
    const key = Object.values(attributes).join("\u0000")
    let found = tagged.get(key)
    if (found === undefined) {
      found = make(attributes)
      tagged.set(key, found)
    }
    return found
  }
}
