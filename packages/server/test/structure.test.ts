/**
 * The server's layout rules (docs/ARCHITECTURE.md): no folder imports a folder
 * that imports it back, directly or round a longer loop, and `platform/` (the
 * floor every feature stands on) imports no feature.
 */
import { readdirSync, readFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { describe, expect, it } from "vitest"

const SRC = join(import.meta.dirname, "../src")
const IMPORT =
  /(?:^|\n)\s*(?:import|export)\b[^"'`]*?from\s*["'](\.{1,2}\/[^"']+)["']|import\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g

const sourceFiles = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sourceFiles(join(dir, entry.name))
      : entry.name.endsWith(".ts")
      ? [join(dir, entry.name)]
      : []
  )

/** Folder → the folders its files import (relative imports only; packages are not folders of this tree). */
const folderGraph = (): Map<string, Map<string, Array<string>>> => {
  const graph = new Map<string, Map<string, Array<string>>>()
  for (const file of sourceFiles(SRC)) {
    const from = relative(SRC, dirname(file)) || "."
    const edges = graph.get(from) ?? new Map<string, Array<string>>()
    graph.set(from, edges)
    for (const match of readFileSync(file, "utf8").matchAll(IMPORT)) {
      const to = relative(SRC, dirname(resolve(dirname(file), match[1] ?? match[2]))) || "."
      if (to === from) continue
      edges.set(to, [...(edges.get(to) ?? []), relative(SRC, file)])
    }
  }
  return graph
}

/** Every loop of the graph, as the folders on it (Tarjan's strongly connected components larger than one). */
const loopsOf = (graph: ReadonlyMap<string, ReadonlyMap<string, unknown>>): Array<Array<string>> => {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: Array<string> = []
  const onStack = new Set<string>()
  const loops: Array<Array<string>> = []
  const visit = (node: string) => {
    index.set(node, next)
    low.set(node, next++)
    stack.push(node)
    onStack.add(node)
    for (const to of graph.get(node)?.keys() ?? []) {
      if (!index.has(to)) {
        visit(to)
        low.set(node, Math.min(low.get(node)!, low.get(to)!))
      } else if (onStack.has(to)) {
        low.set(node, Math.min(low.get(node)!, index.get(to)!))
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: Array<string> = []
      let member: string
      do {
        member = stack.pop()!
        onStack.delete(member)
        component.push(member)
      } while (member !== node)
      if (component.length > 1) loops.push(component.toSorted())
    }
  }
  for (const node of graph.keys()) if (!index.has(node)) visit(node)
  return loops
}

const REPO = join(import.meta.dirname, "../../..")
/** Each workspace package's root and the folders of its code. */
const PACKAGES = [
  ...readdirSync(join(REPO, "packages")).map((name) => join(REPO, "packages", name)),
  join(REPO, "deploy")
]

describe("the workspace's packages", () => {
  it("reach each other only through their entry points (@strata/…), never by a relative path", () => {
    const crossings: Array<string> = []
    for (const root of PACKAGES) {
      for (const folder of ["src", "test"]) {
        let files: Array<string>
        try {
          files = sourceFiles(join(root, folder))
        } catch {
          continue // a package without tests, say
        }
        for (const file of files) {
          for (const match of readFileSync(file, "utf8").matchAll(IMPORT)) {
            const target = resolve(dirname(file), match[1] ?? match[2])
            if (relative(root, target).startsWith("..")) {
              crossings.push(`${relative(REPO, file)} → ${match[1] ?? match[2]}`)
            }
          }
        }
      }
    }
    expect(crossings).toEqual([])
  })
})

describe("the server's folders", () => {
  const graph = folderGraph()

  it("finds loops, short and long (a check of the check)", () => {
    const edges = (pairs: Array<[string, string]>) => {
      const g = new Map<string, Map<string, true>>()
      for (const [a, b] of pairs) g.set(a, (g.get(a) ?? new Map()).set(b, true))
      return g
    }
    expect(loopsOf(edges([["a", "b"], ["b", "a"], ["c", "a"]]))).toEqual([["a", "b"]])
    expect(loopsOf(edges([["a", "b"], ["b", "c"], ["c", "a"]]))).toEqual([["a", "b", "c"]])
    expect(loopsOf(edges([["a", "b"], ["b", "c"], ["a", "c"]]))).toEqual([])
  })

  it("import each other in no loop", () => {
    const loops = loopsOf(graph).map((loop) =>
      loop.map((folder) =>
        `${folder} → ${
          [...(graph.get(folder)?.entries() ?? [])].filter(([to]) => loop.includes(to))
            .map(([to, files]) => `${to} (${[...new Set(files)].join(", ")})`).join("; ")
        }`
      )
    )
    expect(loops).toEqual([])
  })

  it("keep platform/ free of features: it imports only platform/", () => {
    const outside = [...graph].filter(([from]) => from.startsWith("platform"))
      .flatMap(([from, edges]) =>
        [...edges].filter(([to]) => !to.startsWith("platform")).map(([to, files]) => `${from} → ${to}: ${files}`)
      )
    expect(outside).toEqual([])
  })

  it("are the ones the layout names (a new folder goes into docs/ARCHITECTURE.md and the README)", () => {
    expect([...graph.keys()].toSorted()).toEqual([
      ".",
      "admin",
      "auth",
      "changes",
      "cli",
      "events",
      "health",
      "idempotency",
      "maintenance",
      "platform/cache",
      "platform/config",
      "platform/http",
      "platform/json",
      "platform/observability",
      "platform/runtime",
      "platform/sql",
      "records",
      "schemas"
    ])
  })
})
