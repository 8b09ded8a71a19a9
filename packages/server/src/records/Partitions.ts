/**
 * Time partitions of `records` (README: Storage): the bounds of the partition that holds
 * an instant, for each `PARTITION_INTERVAL`, and the partition's table name.
 */
import type { PartitionInterval } from "../platform/config/DatabaseConfig.ts"

export interface PartitionBounds {
  readonly name: string
  readonly from: Date
  readonly to: Date
}

const DAY_MS = 86_400_000

const startOf = (interval: PartitionInterval, ms: number): Date => {
  const d = new Date(ms)
  switch (interval) {
    case "day":
      return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()))
    case "week": {
      // ISO weeks start on Monday (getUTCDay: Sunday = 0)
      const day = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate())
      return new Date(day - ((d.getUTCDay() + 6) % 7) * DAY_MS)
    }
    case "month":
      return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1))
  }
}

const next = (interval: PartitionInterval, start: Date): Date => {
  switch (interval) {
    case "day":
      return new Date(start.getTime() + DAY_MS)
    case "week":
      return new Date(start.getTime() + 7 * DAY_MS)
    case "month":
      return new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1))
  }
}

const stamp = (d: Date): string => d.toISOString().slice(0, 10).replaceAll("-", "")

/** The partition that holds the instant `ms`. */
export const partitionFor = (interval: PartitionInterval, ms: number): PartitionBounds => {
  const from = startOf(interval, ms)
  return { name: `records_${stamp(from)}`, from, to: next(interval, from) }
}

/** The partition after `bounds`. */
export const nextPartition = (interval: PartitionInterval, bounds: PartitionBounds): PartitionBounds =>
  partitionFor(interval, bounds.to.getTime())
