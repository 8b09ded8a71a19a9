/**
 * A reader of the Prometheus text format (0.0.4) for tests: samples with their
 * labels, and the declared TYPE and HELP of each metric family.
 */
export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

export interface Exposition {
  readonly samples: ReadonlyArray<Sample>
  readonly types: ReadonlyMap<string, string>
  readonly help: ReadonlyMap<string, string>
  /** Samples named `name` whose labels include `labels`. */
  readonly find: (name: string, labels?: Record<string, string>) => ReadonlyArray<Sample>
  /** The sum of those samples' values (0 when there are none). */
  readonly sum: (name: string, labels?: Record<string, string>) => number
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

export const parsePrometheusText = (text: string): Exposition => {
  const samples: Array<Sample> = []
  const types = new Map<string, string>()
  const help = new Map<string, string>()
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue
    const declared = /^# (TYPE|HELP) (\S+) (.*)$/.exec(line)
    if (declared !== null) {
      ;(declared[1] === "TYPE" ? types : help).set(declared[2], declared[3])
      continue
    }
    const match = SAMPLE.exec(line)
    if (match === null) throw new Error(`not a Prometheus sample: ${line}`)
    const labels: Record<string, string> = {}
    for (const [, key, value] of (match[2] ?? "").matchAll(LABEL)) labels[key] = value.replace(/\\(.)/g, "$1")
    samples.push({ name: match[1], labels, value: Number(match[3]) })
  }
  const find = (name: string, labels: Record<string, string> = {}) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  return { samples, types, help, find, sum: (name, labels) => find(name, labels).reduce((a, s) => a + s.value, 0) }
}
