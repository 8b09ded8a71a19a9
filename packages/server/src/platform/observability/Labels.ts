/**
 * `Metric.withAttributes` builds the metric's key (a JSON string of the sorted
 * attributes) on every call, which shows in profiles of the hot read path.
 * Every label here takes a small fixed set of values, so each combination is
 * tagged once and reused.
 */
import { Metric } from "effect"

export const labelled = <Input, State>(metric: Metric.Metric<Input, State>) => {
  const tagged = new Map<string, Metric.Metric<Input, State>>()
  return (attributes: Readonly<Record<string, string>>): Metric.Metric<Input, State> => {
    // Call sites pass the same keys in the same order, so the values identify the set.
    const key = Object.values(attributes).join("\u0000")
    let found = tagged.get(key)
    if (found === undefined) {
      found = Metric.withAttributes(metric, attributes)
      tagged.set(key, found)
    }
    return found
  }
}
