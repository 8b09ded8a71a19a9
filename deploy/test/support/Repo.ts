/**
 * What the deploy tests read: files of the repository, the README's
 * configuration table (the contract every env name must come from), durations
 * as the server parses them, and the external tools (kubectl, promtool) with
 * the suites' rule for a missing one: skip loudly locally, fail under CI.
 */
import { spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { parse as parseYaml, parseAllDocuments } from "yaml"

export const root = join(import.meta.dirname, "../../..")
export const path = (...parts: Array<string>) => join(root, ...parts)
export const read = (relative: string) => readFileSync(path(relative), "utf8")
export const readYaml = (relative: string): any => parseYaml(read(relative))
export const readYamlDocuments = (text: string): Array<any> =>
  parseAllDocuments(text).map((document) => {
    if (document.errors.length > 0) throw document.errors[0]
    return document.toJS()
  }).filter((object) => object !== null)

/** The README's configuration table: variable name → its default, as written. */
export const configurationTable = (): ReadonlyMap<string, string> => {
  const readme = read("README.md")
  const section = readme.slice(readme.indexOf("## Configuration"), readme.indexOf("## Operations"))
  return new Map(
    Array.from(section.matchAll(/^\| `([A-Z][A-Z0-9_]+)` \| (.*?) \|/gm), (m) => [m[1], m[2].replaceAll("`", "")])
  )
}

/** Seconds in a duration written as the server reads them (`5s`, `250ms`, `2m`, `1h`, `1d`). */
export const seconds = (text: string): number => {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(text.trim())
  if (match === null) throw new Error(`not a duration: ${text}`)
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[match[2] as "ms" | "s" | "m" | "h" | "d"]
  return Number(match[1]) * unit
}

/**
 * The command's path when it is installed. Missing: under CI=true this throws
 * (scripts/test installs promtool there), locally it warns and answers undefined.
 */
export const tool = (command: string, why: string): string | undefined => {
  const found = spawnSync("sh", ["-c", `command -v ${command}`], { encoding: "utf8" })
  if (found.status === 0) return found.stdout.trim()
  if (process.env.CI === "true") throw new Error(`${command} is required under CI=true (${why})`)
  console.warn(`\n!!! ${command} is not on PATH: SKIPPING ${why} !!!\n`)
  return undefined
}

/** Runs a command; answers its exit code and output (stdout and stderr together). */
export const run = (command: string, args: ReadonlyArray<string>, options: { cwd?: string; input?: string } = {}) => {
  const result = spawnSync(command, args, {
    cwd: options.cwd ?? root,
    input: options.input,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024
  })
  if (result.error !== undefined) throw result.error
  return { status: result.status, stdout: result.stdout, output: result.stdout + result.stderr }
}
