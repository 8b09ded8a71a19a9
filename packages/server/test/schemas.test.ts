/**
 * Stream schemas (README: Schemas): the contract on every Db layer and over a socket,
 * concurrent registrations on PostgreSQL, hostile schemas, the hot route, and
 * properties of validation.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import {
  acquireApp,
  backends,
  type Db,
  describeBackends,
  eventually,
  makeSocketApp,
  makeTestApp,
  memory,
  memoryDb,
  postgres,
  problemOf,
  RecordingBus,
  recordOf,
  schemaVersionsOf,
  sleep,
  type TestApp
} from "@strata/testing"
import { Context, Duration, Effect, Layer, ManagedRuntime, Result } from "effect"
import fc from "fast-check"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { AppConfig } from "../src/platform/config/AppConfig.ts"
import { SchemaCompiler } from "../src/schemas/SchemaCompiler.ts"
import { compileSchema, violations } from "../src/schemas/SchemaRules.ts"
import { describeSchemasApi, put } from "./support/SchemasContract.ts"

describeSchemasApi("stream schemas", backends, (db) => makeTestApp(db.layer))

describeSchemasApi("stream schemas over a socket with the hot routes", [memory], (db) => makeSocketApp(db.layer))

/** The event of a record carries its schema version, from the memory store and from PostgreSQL's outbox. */
describeBackends(
  "schema versions in events",
  [memory, postgres],
  (db) =>
    Effect.gen(function*() {
      const bus = yield* Layer.build(RecordingBus.layer.pipe(Layer.provide(AppConfig.layerWith())))
      const app = yield* acquireApp(() =>
        makeTestApp(db.layer, { outboxPollInterval: Duration.millis(10) }, undefined, Layer.succeedContext(bus))
      )
      return { app, state: Context.get(bus, RecordingBus) }
    }),
  ({ test }) => {
    test("an event's strata-schema-version header and value carry the record's schemaVersion", async ({ app, state }) => {
      await put(app, "evented", { schema: { type: "object" } })
      const withSchema = await recordOf(await app.json("/data", { stream: "evented", data: {} }))
      const without = await recordOf(await app.json("/data", { stream: "unschemed", data: {} }))
      const find = (id: string) => state.published.find((m) => m.headers["strata-record-id"] === id)
      await eventually(() => find(withSchema.id) !== undefined && find(without.id) !== undefined)
      expect(find(withSchema.id)?.headers["strata-schema-version"]).toBe("1")
      expect(JSON.parse(find(withSchema.id)!.value).schemaVersion).toBe(1)
      expect(find(without.id)?.headers["strata-schema-version"]).toBe("none")
      expect(JSON.parse(find(without.id)!.value).schemaVersion).toBeNull()
    })
  }
)

describeBackends(
  "concurrent registrations",
  [postgres],
  (db) => acquireApp(() => makeTestApp(db.layer)),
  ({ test }) => {
    test("numbers 20 concurrent PUTs of different schemas 1…20 with no gaps, and the same schema once", async (a) => {
      const schemas = Array.from({ length: 20 }, (_, i) => ({ type: "object", properties: { [`p${i}`]: {} } }))
      const answers = await Promise.all(schemas.map((schema) => put(a, "race", { schema })))
      expect(answers.map((r) => r.status)).toEqual(schemas.map(() => 201))
      const versions = await Promise.all(answers.map(async (r) => ((await r.json()) as { version: number }).version))
      expect(versions.toSorted((x, y) => x - y)).toEqual(schemas.map((_, i) => i + 1))
      const listed = await schemaVersionsOf(await a.request("/streams/race/schema/versions"))
      expect(listed.versions.map((v) => v.version)).toEqual(schemas.map((_, i) => i + 1))

      // The same new schema from 10 requests at once: one version, nine no-ops.
      const same = { type: "object", required: ["x"] }
      const statuses = await Promise.all(Array.from({ length: 10 }, () => put(a, "race-same", { schema: same })))
      expect(statuses.map((r) => r.status).toSorted()).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 200, 201])
    }, 60_000)
  }
)

const replica = (db: Db) => acquireApp(() => makeTestApp(db.layer, { schemaCacheTtl: Duration.millis(300) }))

describeBackends(
  "two replicas on one database",
  [postgres],
  (db) => Effect.all([replica(db), replica(db)]),
  ({ test }) => {
    test("a version registered on one is enforced by the other within SCHEMA_CACHE_TTL", async ([a, b]) => {
      const key = await a.createKey({ scopes: ["records:read", "records:write", "schemas:write"] })
      const bad = { stream: "shared", data: { n: "not a number" } }
      // B learns that the stream has no schema, and keeps that for the TTL.
      expect((await b.json("/data", bad, {}, key)).status).toBe(201)
      const registered = await put(
        a,
        "shared",
        { schema: { type: "object", properties: { n: { type: "number" } } } },
        key
      )
      expect(registered.status).toBe(201)
      expect((await a.json("/data", bad, {}, key)).status).toBe(400) // the registering replica at once
      await sleep(400)
      const late = await b.json("/data", bad, {}, key)
      expect(late.status).toBe(400)
      expect((await problemOf(late)).errors?.[0]).toMatchObject({ path: "data.n", schemaVersion: 1 })
    })
  }
)

describe("hostile schemas are refused at registration with a 400 invalid-schema", () => {
  const app = makeTestApp(memoryDb)
  afterAll(() => app.dispose())

  const refused = async (schema: unknown, message: RegExp) => {
    const res = await put(app, "hostile", { schema })
    expect(res.status).toBe(400)
    const body = await res.json() as { type: string; errors: Array<{ path: string; message: string }> }
    expect(body.type).toBe("/problems/invalid-schema")
    expect(body.errors.map((e) => `${e.path} ${e.message}`).join("\n")).toMatch(message)
  }

  it("over MAX_SCHEMA_BYTES", async () => {
    await refused({ description: "x".repeat(70_000) }, /at most 65536 are allowed \(MAX_SCHEMA_BYTES\)/)
  })

  it("nested deeper than 32", async () => {
    let schema: Record<string, unknown> = { type: "string" }
    for (let i = 0; i < 40; i++) schema = { type: "object", properties: { a: schema } }
    await refused(schema, /must not nest deeper than 32/)
  })

  it("a remote $ref", async () => {
    await refused({ $ref: "https://evil.example/schema.json" }, /schema\.\$ref must be a reference inside the schema/)
    await refused({ properties: { a: { $ref: "other.json#/x" } } }, /\$ref must be a reference inside/)
  })

  it("$data", async () => {
    await refused({ properties: { a: { maximum: { $data: "1/b" } } } }, /\$data references are not allowed/)
  })

  it("an unknown keyword (strict mode)", async () => {
    await refused({ type: "object", propertiez: {} }, /unknown keyword: "propertiez"/)
  })

  it("a pattern RE2 cannot run (backreference, lookahead), in pattern and patternProperties", async () => {
    await refused({ properties: { a: { type: "string", pattern: "^(a)\\1$" } } }, /linear-time engine/)
    await refused({ patternProperties: { "^(?=x)": {} } }, /patternProperties.*linear-time engine/)
  })

  it("accepts a local $ref and a catastrophic-backtracking pattern, which RE2 runs in linear time", async () => {
    const schema = {
      $defs: { word: { type: "string", pattern: "^(a+)+$" } },
      type: "object",
      properties: { w: { $ref: "#/$defs/word" } }
    }
    expect((await put(app, "evil-regex", { schema })).status).toBe(201)
    // 30 a's and a "!" take a backtracking engine about 2^30 steps; RE2 a few hundred.
    const started = performance.now()
    const res = await app.json("/data", { stream: "evil-regex", data: { w: `${"a".repeat(30)}!` } })
    const ms = performance.now() - started
    expect(res.status).toBe(400)
    expect((await problemOf(res)).errors?.[0]).toMatchObject({ path: "data.w", keyword: "pattern" })
    console.info(`backtracking pattern on 31 characters: answered in ${ms.toFixed(1)} ms`)
  })

  it("compiles a schema just within the limits and reports how long that takes", async () => {
    // About 60 KiB: 600 properties, each with a pattern, a range and a format.
    const properties: Record<string, unknown> = {}
    for (let i = 0; i < 600; i++) {
      properties[`field_${i}`] = i % 2 === 0
        ? { type: "string", pattern: `^[a-z]{1,${(i % 20) + 1}}[0-9]*$`, maxLength: 64 }
        : { type: "number", minimum: -i, maximum: i * 10, multipleOf: 0.5 }
    }
    const schema = { type: "object", properties, required: ["field_0"] }
    const bytes = Buffer.byteLength(JSON.stringify(schema))
    expect(bytes).toBeLessThan(64 * 1024)
    expect(bytes).toBeGreaterThan(40 * 1024)
    const started = performance.now()
    const compiled = compileSchema(schema, 64 * 1024)
    const ms = performance.now() - started
    expect(Result.isSuccess(compiled)).toBe(true)
    console.info(`compiling a ${bytes}-byte schema (600 properties) on the event loop: ${ms.toFixed(1)} ms`)

    // Registered over HTTP, the compile runs in the worker: what the event loop
    // (every other tenant's requests) waits for is the longest gap between ticks.
    const delay = monitorEventLoopDelay({ resolution: 5 })
    delay.enable()
    const putStarted = performance.now()
    const registered = await put(app, "big-schema", { schema })
    const putMs = performance.now() - putStarted
    delay.disable()
    expect(registered.status).toBe(201)
    console.info(
      `registering it over HTTP took ${putMs.toFixed(0)} ms; longest event-loop stall meanwhile: ${
        (delay.max / 1e6).toFixed(1)
      } ms`
    )
  })
})

describe("the compile worker", () => {
  it("refuses a compile past its time limit, replaces the worker and compiles what was queued behind", async () => {
    const hanging = new URL("./support/HangingCompileWorker.ts", import.meta.url)
    const runtime = ManagedRuntime.make(SchemaCompiler.layerWith(1000, hanging))
    try {
      const compile = (schema: unknown) =>
        runtime.runPromise(Effect.result(SchemaCompiler.use((c) => c.compile(schema, 64 * 1024))))
      const [stuck, queued, after] = await Promise.all([
        compile({ type: "object", description: "x-hang" }),
        compile({ type: "object", required: ["a"] }),
        compile({ type: "object", propertiez: {} })
      ])
      expect(Result.isFailure(stuck) && stuck.failure[0].message).toBe("took more than 1 s to compile")
      expect(Result.isSuccess(queued) && queued.success({ a: 1 }) && !queued.success({})).toBe(true)
      expect(Result.isFailure(after) && after.failure[0].message).toMatch(/unknown keyword: "propertiez"/)
    } finally {
      await runtime.dispose()
    }
  }, 30_000)
})

describe("the hot route validates against a schema cached in process", () => {
  let app: TestApp
  beforeAll(async () => {
    app = await makeSocketApp(memoryDb)
  })
  afterAll(() => app.dispose())

  it("answers a valid record itself (with its schemaVersion) and hands a violation to the app's 400", async () => {
    const key = await app.createKey({ rateLimit: { rps: 1e6, burst: 1e6 } })
    const registrar = await app.createKey({ scopes: ["schemas:write"] })
    expect(
      (await put(app, "hot-schema", { schema: { type: "object", properties: { n: { type: "integer" } } } }, registrar))
        .status
    ).toBe(201)
    // The first request verifies the key through the app; from then on the hot route may answer.
    expect((await app.json("/data", { stream: "hot-schema", data: { n: 1 } }, {}, key)).status).toBe(201)

    const before = app.hotAnswered!()
    const ok = await app.json("/data", { stream: "hot-schema", data: { n: 2 } }, {}, key)
    expect(ok.status).toBe(201)
    expect((await recordOf(ok)).schemaVersion).toBe(1)
    expect(app.hotAnswered!()).toBe(before + 1)

    const bad = await app.json("/data", { stream: "hot-schema", data: { n: 2.5 } }, {}, key)
    expect(bad.status).toBe(400)
    expect((await problemOf(bad)).errors).toEqual([
      { path: "data.n", message: "must be integer", keyword: "type", schemaVersion: 1 }
    ])
    expect(app.hotAnswered!()).toBe(before + 1)

    // A stream without a schema stays on the hot route once the app has looked it up.
    expect((await app.json("/data", { stream: "hot-free", data: { n: 2.5 } }, {}, key)).status).toBe(201)
    const free = await app.json("/data", { stream: "hot-free", data: { n: 2.5 } }, {}, key)
    expect((await recordOf(free)).schemaVersion).toBeNull()
    expect(app.hotAnswered!()).toBe(before + 2)
  })
})

describe("properties of validation against a 10-property schema", () => {
  const schema = {
    type: "object",
    properties: {
      id: { type: "string", minLength: 1, maxLength: 20 },
      amount: { type: "number", minimum: 0 },
      count: { type: "integer", minimum: 0, maximum: 1000 },
      currency: { enum: ["EUR", "USD", "GBP"] },
      paid: { type: "boolean" },
      email: { type: "string", format: "email" },
      tags: { type: "array", items: { type: "string" }, maxItems: 5 },
      note: { type: ["string", "null"] },
      code: { type: "string", pattern: "^[A-Z]{2}[0-9]{2}$" },
      address: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
    },
    required: ["id", "amount", "count", "currency", "paid"],
    additionalProperties: false
  }
  const compiled = compileSchema(schema, 64 * 1024)
  if (Result.isFailure(compiled)) throw new Error(compiled.failure[0].message)
  const validate = compiled.success

  const valid = fc.record({
    id: fc.string({ minLength: 1, maxLength: 20 }),
    amount: fc.double({ min: 0, max: 1e9, noNaN: true }),
    count: fc.integer({ min: 0, max: 1000 }),
    currency: fc.constantFrom("EUR", "USD", "GBP"),
    paid: fc.boolean(),
    email: fc.constantFrom("a@example.com", "ops@strata.test"),
    tags: fc.array(fc.string(), { maxLength: 5 }),
    note: fc.option(fc.string(), { nil: null }),
    code: fc.stringMatching(/^[A-Z]{2}[0-9]{2}$/),
    address: fc.record({ city: fc.string() })
  }, { requiredKeys: ["id", "amount", "count", "currency", "paid"] })

  it("accepts every record generated from the schema", () => {
    fc.assert(fc.property(valid, (data) => violations(validate, 1, data, "data").length === 0))
  })

  it("rejects a record with one property of the wrong type, with a path inside data", () => {
    const wrong: Record<string, unknown> = {
      id: 42,
      amount: "12",
      count: 1.5,
      currency: "JPY",
      paid: "yes",
      email: "not an email",
      tags: [1],
      note: 3,
      code: "ab12",
      address: { town: "x" }
    }
    fc.assert(fc.property(valid, fc.constantFrom(...Object.keys(wrong)), (data, field) => {
      const errors = violations(validate, 1, { ...data, [field]: wrong[field] }, "data")
      return errors.length > 0 && errors.every((e) => e.path.startsWith(`data.${field}`) && e.schemaVersion === 1)
    }))
  })

  describe("over HTTP", () => {
    const app = makeTestApp(memoryDb)
    afterAll(() => app.dispose())

    it("POST /data stores generated records and refuses mutated ones with a 400 naming data.<field>", async () => {
      expect((await put(app, "props", { schema })).status).toBe(201)
      const wrong: Record<string, unknown> = { id: "", amount: -1, count: 1001, currency: "eur", paid: null }
      await fc.assert(
        fc.asyncProperty(valid, fc.constantFrom(...Object.keys(wrong)), async (data, field) => {
          const ok = await app.json("/data", { stream: "props", data })
          expect(ok.status).toBe(201)
          const res = await app.json("/data", { stream: "props", data: { ...data, [field]: wrong[field] } })
          expect(res.status).toBe(400)
          const body = await res.json() as { errors: Array<{ path: string; schemaVersion: number }> }
          expect(body.errors.every((e) => e.path.startsWith(`data.${field}`) && e.schemaVersion === 1)).toBe(true)
        }),
        { numRuns: 30 }
      )
    })
  })
})
