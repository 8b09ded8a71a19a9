/**
 * A stream's schema copy in process (README: Schemas): trusted for SCHEMA_CACHE_TTL,
 * and read again in the background once past half of it, so a stream in steady use
 * never finds its copy expired, while a new version still shows within the TTL.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Layer } from "effect"
import { TestClock } from "effect/testing"
import { AppConfig } from "../../src/platform/config/AppConfig.ts"
import { SchemaCompiler } from "../../src/schemas/SchemaCompiler.ts"
import { SchemaRegistry } from "../../src/schemas/SchemaRegistry.ts"
import { StreamSamples } from "../../src/schemas/StreamSamples.ts"
import { StreamSchemas } from "../../src/schemas/StreamSchemas.ts"

const TTL = Duration.seconds(2)

const schemasLayer = StreamSchemas.layer.pipe(
  Layer.provideMerge(SchemaRegistry.layerMemory),
  Layer.provide(SchemaCompiler.layer),
  Layer.provide(Layer.succeed(StreamSamples, StreamSamples.of({ recent: () => Effect.succeed([]) }))),
  Layer.provide(AppConfig.layerWith({ schemaCacheTtl: TTL }))
)

describe("StreamSchemas.peekUnsafe", () => {
  it.effect("keeps a stream in steady use known across many TTLs, and shows a new version within one", () =>
    Effect.gen(function*() {
      const schemas = yield* StreamSchemas
      const registry = yield* SchemaRegistry
      yield* registry.register("t", "s", { type: "object" }, "none")
      expect(schemas.peekUnsafe("t", "s")).toBeUndefined() // not read yet: the write path reads through
      expect((yield* schemas.current("t", "s"))?.version).toBe(1)

      // Used every 300 ms for 10 s (5 TTLs): never unknown here.
      for (let t = 0; t < 10_000; t += 300) {
        yield* TestClock.adjust(Duration.millis(300))
        yield* Effect.yieldNow // the background read, when one started
        expect(schemas.peekUnsafe("t", "s")?.version).toBe(1)
      }

      // Another replica registers version 2. Half a TTL on, a use starts the read in the
      // background (its compile runs in a worker, in real time) while the copy still answers.
      yield* registry.register("t", "s", { type: "object", required: ["a"] }, "none")
      yield* TestClock.adjust(Duration.millis(Duration.toMillis(TTL) / 2 + 1))
      expect(schemas.peekUnsafe("t", "s")?.version).toBeDefined()
      let version: number | undefined
      for (let i = 0; i < 200 && version !== 2; i++) {
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 10)))
        version = schemas.peekUnsafe("t", "s")?.version
      }
      expect(version).toBe(2) // within one TTL of the registration, with no read through
    }).pipe(Effect.provide(schemasLayer)))

  it.effect("keeps this replica's own registration when an older read lands after it", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const armed = { on: false }
      // The first read after arming answers what the registry held then, but only once the gate opens.
      const lagging = Layer.effect(
        SchemaRegistry,
        Effect.map(SchemaRegistry, (registry) =>
          SchemaRegistry.of({
            ...registry,
            current: (tenant, stream) => {
              if (!armed.on) return registry.current(tenant, stream)
              armed.on = false
              return Effect.flatMap(registry.current(tenant, stream), (found) => Effect.as(Deferred.await(gate), found))
            }
          }))
      ).pipe(Layer.provideMerge(SchemaRegistry.layerMemory))
      const layer = StreamSchemas.layer.pipe(
        Layer.provideMerge(lagging),
        Layer.provide(SchemaCompiler.layer),
        Layer.provide(Layer.succeed(StreamSamples, StreamSamples.of({ recent: () => Effect.succeed([]) }))),
        Layer.provide(AppConfig.layerWith({ schemaCacheTtl: TTL }))
      )
      yield* Effect.gen(function*() {
        const schemas = yield* StreamSchemas
        const registry = yield* SchemaRegistry
        yield* registry.register("t", "s", { type: "object" }, "none")
        expect((yield* schemas.current("t", "s"))?.version).toBe(1)
        yield* TestClock.adjust(Duration.millis(Duration.toMillis(TTL) / 2 + 1))
        armed.on = true
        expect(schemas.peekUnsafe("t", "s")?.version).toBe(1) // starts the background read, which reads version 1
        yield* Effect.yieldNow
        yield* schemas.register("t", "s", { type: "object", required: ["a"] }, "none")
        expect(schemas.peekUnsafe("t", "s")?.version).toBe(2) // this replica's own, at once
        yield* Deferred.succeed(gate, undefined)
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))
        expect(schemas.peekUnsafe("t", "s")?.version).toBe(2) // the late read of version 1 did not undo it
      }).pipe(Effect.provide(layer))
    }))

  it.effect("lets a copy nobody uses expire", () =>
    Effect.gen(function*() {
      const schemas = yield* StreamSchemas
      expect(yield* schemas.current("t", "quiet")).toBeNull() // no schema: kept as such
      expect(schemas.peekUnsafe("t", "quiet")).toBeNull()
      yield* TestClock.adjust(TTL)
      expect(schemas.peekUnsafe("t", "quiet")).toBeUndefined()
    }).pipe(Effect.provide(schemasLayer)))
})
