/**
 * The README's configuration table must list every environment variable the
 * server reads, and nothing it does not.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { AppConfig } from "../src/platform/config/AppConfig.ts"
import { effectiveConfig } from "../src/platform/config/Describe.ts"

const root = join(import.meta.dirname, "../../..")
const sources = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith(".ts") ? [join(dir, entry.name)] : []
  )

/** The variables in the README's configuration table. */
const documentedVariables = () => {
  const readme = readFileSync(join(root, "README.md"), "utf8")
  const table = readme.slice(readme.indexOf("## Configuration"))
  return new Set(Array.from(table.matchAll(/^\| `([A-Z][A-Z0-9_]+)` \|/gm), (m) => m[1]))
}

const READS =
  /(?:Config\.\w+\(|\b(?:duration|bytes|intBetween|flag|httpUrl)\(|,)\s*"([A-Z][A-Z0-9_]{2,})"\s*[),]|process\.env\.([A-Z][A-Z0-9_]{2,})/g

describe("configuration", () => {
  it("documents every variable the server reads in the README table", () => {
    const read = new Set<string>()
    for (const file of sources(join(root, "packages/server/src"))) {
      // A variable is named as the argument of a Config constructor or of one of
      // config/Units.ts's helpers, or last after a schema or a list
      // (`Config.schema(s, "NAME")`, `oneOf([...], "NAME")`),
      // or read straight from process.env.
      for (const match of readFileSync(file, "utf8").matchAll(READS)) {
        read.add(match[1] ?? match[2])
      }
    }
    const documented = documentedVariables()
    expect(read.size).toBeGreaterThan(10)
    expect([...read].filter((name) => !documented.has(name))).toEqual([])
    expect([...documented].filter((name) => !read.has(name))).toEqual([])
  })

  it("`pnpm strata config` prints every variable of the table under its documented name", async () => {
    const settings = await Effect.runPromise(
      Effect.gen(function*() {
        return yield* AppConfig
      }).pipe(Effect.provide(AppConfig.layerWith()))
    )
    const printed = effectiveConfig(settings).map(([name]) => name).toSorted()
    expect(printed).toEqual([...documentedVariables()].toSorted())
  })
})
