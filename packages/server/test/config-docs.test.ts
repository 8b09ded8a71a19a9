/**
 * The README's configuration table must list every environment variable the
 * server reads, and nothing it does not.
 */
import { describe, expect, it } from "@effect/vitest"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"

const root = join(import.meta.dirname, "../../..")
const sources = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith(".ts") ? [join(dir, entry.name)] : []
  )

describe("configuration", () => {
  it("documents every variable the server reads in the README table", () => {
    const read = new Set<string>()
    for (const file of sources(join(root, "packages/server/src"))) {
      for (const match of readFileSync(file, "utf8").matchAll(/[(,]\s*"([A-Z][A-Z0-9_]{2,})"\s*[),]/g)) {
        read.add(match[1])
      }
    }
    const readme = readFileSync(join(root, "README.md"), "utf8")
    const table = readme.slice(readme.indexOf("## Configuration"))
    const documented = new Set(Array.from(table.matchAll(/^\| `([A-Z][A-Z0-9_]+)` \|/gm), (m) => m[1]))
    expect(read.size).toBeGreaterThan(10)
    expect([...read].filter((name) => !documented.has(name))).toEqual([])
    expect([...documented].filter((name) => !read.has(name))).toEqual([])
  })
})
