/**
 * Bundles the server and the command-line tool for the container image
 * (`scripts/image`): `server.mjs` and `cli.mjs` in the output directory, plus
 * the one package that cannot be bundled, `@electric-sql/pglite`, which loads
 * its WebAssembly and data files from beside its own module at run time. That
 * package is copied without the files the image never reads (source maps,
 * typings, the CommonJS build, the optional extensions).
 *
 *   node scripts/bundle.ts <output directory>
 *
 * Node refuses to strip types under node_modules, and the workspace packages
 * are TypeScript, so the image runs a bundle instead of the sources.
 */
import { build, type Plugin } from "esbuild"
import { cpSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"

const root = join(import.meta.dirname, "..")
const out = process.argv[2]
if (out === undefined) throw new Error("usage: node scripts/bundle.ts <output directory>")
rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })

// The Kafka client's compression and CRC code reads a .wasm beside its module;
// the package's `bundled` entry has it inlined, for bundles like this one.
const wasmInlined: Plugin = {
  name: "wasm-utils-bundled",
  setup: (build) => {
    build.onResolve(
      { filter: /^@platformatic\/wasm-utils$/ },
      (args) => build.resolve("@platformatic/wasm-utils/bundled", { resolveDir: args.resolveDir, kind: args.kind })
    )
  }
}

const result = await build({
  entryPoints: {
    server: join(root, "packages/server/src/main.ts"),
    cli: join(root, "packages/server/src/cli/main.ts")
  },
  outdir: out,
  outExtension: { ".js": ".mjs" },
  bundle: true,
  // Code both entry points use is one shared chunk, not two copies.
  splitting: true,
  chunkNames: "chunks/[name]-[hash]",
  platform: "node",
  format: "esm",
  target: "node24",
  external: ["@electric-sql/pglite"],
  plugins: [wasmInlined],
  // Whitespace and syntax only: names stay, so stack traces and span names read as in the sources.
  minifyWhitespace: true,
  minifySyntax: true,
  keepNames: true,
  legalComments: "none",
  metafile: true,
  logLevel: "warning",
  // The CommonJS dependencies (ioredis, …) use require() and __dirname, which an ES module lacks.
  banner: {
    js: "import { createRequire as __strataRequire } from \"node:module\";" +
      "const require=__strataRequire(import.meta.url),__filename=import.meta.filename,__dirname=import.meta.dirname;"
  }
})

// The packages that went into the bundle, for the image's inventory (scanners cannot see inside a bundle).
const bundled = new Map<string, string>()
for (const input of Object.keys(result.metafile.inputs)) {
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input.replace(/.*\.pnpm\/[^/]+\//, ""))
  if (match === null || bundled.has(match[1])) continue
  const dir = input.slice(0, input.lastIndexOf(`node_modules/${match[1]}/`) + `node_modules/${match[1]}`.length)
  const { version } = JSON.parse(readFileSync(join(root, dir, "package.json"), "utf8")) as { version: string }
  bundled.set(match[1], version)
}

// PGlite as the server resolves it, pruned to what it reads at run time.
const require = createRequire(join(root, "packages/server/package.json"))
const pglite = dirname(dirname(realpathSync(require.resolve("@electric-sql/pglite"))))
const target = join(out, "node_modules/@electric-sql/pglite")
const unused = /\.(map|d\.ts|d\.cts|cjs|tar\.gz)$/
cpSync(pglite, target, {
  recursive: true,
  filter: (source) => {
    const relative = source.slice(pglite.length)
    if (relative.startsWith("/dist/contrib") || relative.startsWith("/src")) return false
    return statSync(source).isDirectory() || !unused.test(relative)
  }
})
const { version: pgliteVersion } = JSON.parse(readFileSync(join(target, "package.json"), "utf8")) as {
  version: string
}
bundled.set("@electric-sql/pglite", pgliteVersion)

const inventory = [...bundled].toSorted(([a], [b]) => a.localeCompare(b)).map(([name, version]) => ({ name, version }))
writeFileSync(join(out, "packages.json"), JSON.stringify(inventory, null, 2) + "\n")
const size = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce(
    (sum, entry) => sum + (entry.isDirectory() ? size(join(dir, entry.name)) : statSync(join(dir, entry.name)).size),
    0
  )
console.error(`bundle: ${inventory.length} packages, ${(size(out) / 1e6).toFixed(1)} MB in ${out}`)
