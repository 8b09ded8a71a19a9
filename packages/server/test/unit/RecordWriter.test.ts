/**
 * The group commit's rhythm (src/records/RecordWriter.ts): at most
 * WRITE_BATCH_CONCURRENCY commits run at once, writes that arrive meanwhile
 * wait and go together into the next one (at most WRITE_BATCH_MAX records
 * each), and a lone write on an idle writer commits at once.
 *
 * The store is the in-memory one, held open by a gate so a test decides when a
 * commit ends; it notes each commit's records and how many ran at once.
 */
import { describe, expect, it } from "@effect/vitest"
import { Array as Arr, Context, Deferred, Effect, Fiber, Layer } from "effect"
import { AppConfig, type Settings } from "../../src/platform/config/AppConfig.ts"
import { MemoryTables } from "../../src/records/MemoryTables.ts"
import { prepareRecord } from "../../src/records/Prepare.ts"
import { RecordStore, type RecordToStore } from "../../src/records/RecordStore.ts"
import { RecordWriter } from "../../src/records/RecordWriter.ts"

interface Observed {
  /** Each commit's record keys, in the order the commits started. */
  readonly commits: Array<Array<string | null>>
  running: number
  mostAtOnce: number
  /** Opened by the test: until then every commit waits. */
  gate: Deferred.Deferred<void>
}

const observedStore = (observed: Observed) =>
  Layer.effect(
    RecordStore,
    Effect.gen(function*() {
      const store = yield* RecordStore
      return RecordStore.of({
        ...store,
        insert: (records) =>
          Effect.gen(function*() {
            observed.commits.push(records.map((r) => r.key))
            observed.running++
            observed.mostAtOnce = Math.max(observed.mostAtOnce, observed.running)
            yield* Deferred.await(observed.gate)
            observed.running--
            return yield* store.insert(records)
          })
      })
    })
  ).pipe(Layer.provide(RecordStore.layerMemory), Layer.provide(MemoryTables.layer))

const setup = (settings: Partial<Settings>) =>
  Effect.gen(function*() {
    const observed: Observed = { commits: [], running: 0, mostAtOnce: 0, gate: yield* Deferred.make<void>() }
    // Built in the test's scope: the writer's commits run in fibers its layer owns.
    const services = yield* Layer.build(
      RecordWriter.layer.pipe(Layer.provide(observedStore(observed)), Layer.provide(AppConfig.layerWith(settings)))
    )
    const writer = Context.get(services, RecordWriter)
    return { observed, writer }
  })

const row = (key: string): RecordToStore => {
  const prepared = prepareRecord("t", { stream: "s", key, data: { key } }, Date.now(), 1_000_000, null)
  if (prepared._tag === "Failure") throw new Error("not a record")
  return prepared.success
}

/** Lets the event loop take a few turns (the writer starts commits on the next one). */
const turns = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))

describe("RecordWriter group commit", () => {
  it.live("commits a lone write at once, with no window to wait out", () =>
    Effect.gen(function*() {
      const { observed, writer } = yield* setup({})
      yield* Deferred.succeed(observed.gate, undefined)
      const { records: [stored] } = yield* writer.write([row("alone")])
      expect(stored.key).toBe("alone")
      expect(observed.commits).toEqual([["alone"]])
    }))

  it.live("coalesces the writes that arrive while a commit runs into the next one", () =>
    Effect.gen(function*() {
      const { observed, writer } = yield* setup({})
      const first = yield* Effect.forkChild(writer.write([row("first")]))
      yield* turns
      const rest = yield* Effect.forkChild(
        Effect.forEach(["a", "b", "c", "d", "e"], (key) => writer.write([row(key)]), { concurrency: "unbounded" })
      )
      yield* turns
      // One commit at a time (the default): the five wait for the first.
      expect(observed.commits).toEqual([["first"]])
      yield* Deferred.succeed(observed.gate, undefined)
      const stored = yield* Fiber.join(rest)
      yield* Fiber.join(first)
      expect(stored.map(({ records: [record] }) => record.key)).toEqual(["a", "b", "c", "d", "e"])
      expect(observed.commits).toEqual([["first"], ["a", "b", "c", "d", "e"]])
      expect(observed.mostAtOnce).toBe(1)
    }))

  it.live("runs up to WRITE_BATCH_CONCURRENCY commits at once, each of at most WRITE_BATCH_MAX records", () =>
    Effect.gen(function*() {
      const { observed, writer } = yield* setup({ writeBatchConcurrency: 2, writeBatchMax: 3 })
      const keys = Arr.makeBy(9, (i) => `k${i}`)
      const all = yield* Effect.forkChild(
        Effect.forEach(keys, (key) => writer.write([row(key)]), { concurrency: "unbounded" })
      )
      yield* turns
      expect(observed.commits).toEqual([["k0", "k1", "k2"], ["k3", "k4", "k5"]])
      yield* Deferred.succeed(observed.gate, undefined)
      yield* Fiber.join(all)
      expect(observed.commits).toEqual([["k0", "k1", "k2"], ["k3", "k4", "k5"], ["k6", "k7", "k8"]])
      expect(observed.mostAtOnce).toBe(2)
    }))

  it.live("commits every write exactly once when commits end at once", () =>
    Effect.gen(function*() {
      const { observed, writer } = yield* setup({ writeBatchMax: 4 })
      yield* Deferred.succeed(observed.gate, undefined)
      const keys = Arr.makeBy(30, (i) => `k${i}`)
      const stored = yield* Effect.forEach(keys, (key) => writer.write([row(key)]), { concurrency: "unbounded" })
      expect(stored.map(({ records: [record] }) => record.key)).toEqual(keys)
      expect(observed.commits.flat()).toEqual(keys)
      expect(observed.commits.every((commit) => commit.length <= 4)).toBe(true)
    }))

  it.live("keeps a unit larger than WRITE_BATCH_MAX whole", () =>
    Effect.gen(function*() {
      const { observed, writer } = yield* setup({ writeBatchMax: 2 })
      yield* Deferred.succeed(observed.gate, undefined)
      const stored = yield* writer.write([row("x"), row("y"), row("z")])
      expect(stored.records.map((r) => r.key)).toEqual(["x", "y", "z"])
      expect(observed.commits).toEqual([["x", "y", "z"]])
    }))
})
