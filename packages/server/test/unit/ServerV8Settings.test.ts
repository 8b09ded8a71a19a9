/**
 * The V8 settings the server process runs with (docs/PERFORMANCE.md,
 * "Pretenuring" and "The young generation"): allocation-site pretenuring off,
 * set by platform/runtime/Pretenuring.ts before anything else, and the same
 * young generation size on every launcher of the server.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { serverNodeFlags } from "../../src/index.ts"

const root = join(import.meta.dirname, "../../../..")
const pretenuring = join(import.meta.dirname, "../../src/platform/runtime/Pretenuring.ts")

/**
 * In a fresh node: one array literal whose every array survives (a million kept
 * a round), so V8 judges its site long-lived; after each round, how many of 100
 * new arrays from that site start in the young generation (pretenured ones are
 * born old). Answers the fewest over ten rounds. The compiler runs on the main
 * thread (`--no-concurrent-recompilation`): with it in the background, whether
 * the site's code is recompiled in time to pretenure varied from run to run.
 */
const youngAfterLongLivedSite = (options: { readonly imported: boolean; readonly nodeFlags?: Array<string> }) => {
  const program = `
    ${options.imported ? `await import(${JSON.stringify(pretenuring)})` : ""}
    const young = new Function("o", "return %InYoungGeneration(o)")
    const make = (i) => [i, i]
    const kept = []
    let fewest = 100
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 1_000_000; i++) kept.push(make(i))
      let count = 0
      for (let i = 0; i < 100; i++) if (young(make(i))) count++
      fewest = Math.min(fewest, count)
    }
    console.log(fewest, kept.length)`
  const out = execFileSync(
    process.execPath,
    [
      "--allow-natives-syntax",
      "--no-concurrent-recompilation",
      ...(options.nodeFlags ?? []),
      "--input-type=module",
      "-e",
      program
    ],
    { encoding: "utf8" }
  )
  return Number(out.split(" ")[0])
}

describe("the server's V8 settings", () => {
  it("without Pretenuring.ts, V8 allocates a long-lived site's new arrays in the old generation (a check of the check)", () => {
    expect(youngAfterLongLivedSite({ imported: false })).toBe(0)
  })

  it("with it, they start young like any other", () => {
    expect(youngAfterLongLivedSite({ imported: true })).toBe(100)
  })

  it("leaves pretenuring on when node was started with --allocation-site-pretenuring", () => {
    expect(youngAfterLongLivedSite({ imported: true, nodeFlags: ["--allocation-site-pretenuring"] })).toBe(0)
  })

  it("main.ts imports it before anything else", () => {
    const main = readFileSync(join(root, "packages/server/src/main.ts"), "utf8")
    const imports = Array.from(main.matchAll(/^import .*?["'](.+?)["']/gm), (m) => m[1])
    expect(imports[0]).toBe("./platform/runtime/Pretenuring.ts")
  })

  it("every launcher starts the server with the same node flags", () => {
    const flags = serverNodeFlags.join(" ")
    expect(readFileSync(join(root, "scripts/start"), "utf8")).toContain(
      `exec node ${flags} packages/server/src/main.ts`
    )
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"))
    expect(pkg.scripts.start).toBe(`node ${flags} packages/server/src/main.ts`)
    const cmd = /^CMD (.+)$/m.exec(readFileSync(join(root, "deploy/Containerfile"), "utf8"))?.[1]
    expect(JSON.parse(cmd ?? "null")).toEqual([...serverNodeFlags, "/app/server.mjs"])
  })
})
