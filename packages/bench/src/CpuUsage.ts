/**
 * CPU time, for `bench load`'s and `bench scale`'s CPU per request: the server
 * process's own (from /proc/PID/stat), a PostgreSQL cluster's, the whole
 * machine's busy time (from /proc/stat) and the generator's (process.cpuUsage). Linux only; elsewhere every reading is
 * undefined and the bench prints none.
 */
import { readdirSync, readFileSync } from "node:fs"

/** Linux's clock tick for /proc times: USER_HZ is 100 on every architecture Node runs on. */
const TICK_MS = 10

const read = (path: string): string | undefined => {
  try {
    return readFileSync(path, "utf8")
  } catch {
    return undefined
  }
}

/** CPU ms the process has used (user + system); undefined when it cannot be read. */
export const processCpuMs = (pid: number): number | undefined => {
  const stat = read(`/proc/${pid}/stat`)
  if (stat === undefined) return undefined
  // The name (field 2) may hold spaces: count fields after its closing parenthesis; utime, stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS
}

/**
 * CPU ms a PostgreSQL cluster's processes have used: the postmaster (its pid is
 * the first line of DATA_DIR/postmaster.pid) and its children, the backends among
 * them. A backend that exited between two readings takes its time with it, so
 * read around a span in which the connections stay open.
 */
export const clusterCpuMs = (dataDir: string): number | undefined => {
  const postmaster = Number(read(`${dataDir}/postmaster.pid`)?.split("\n")[0])
  if (!Number.isInteger(postmaster) || postmaster <= 0) return undefined
  let total = processCpuMs(postmaster)
  if (total === undefined) return undefined
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const stat = read(`/proc/${entry}/stat`)
    if (stat === undefined) continue
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // ppid is field 4: the second after the name.
    if (Number(fields[1]) === postmaster) total += (Number(fields[11]) + Number(fields[12])) * TICK_MS
  }
  return total
}

/** CPU ms the whole machine has been busy, all cores summed (everything but idle and iowait). */
export const machineBusyMs = (): number | undefined => {
  const line = read("/proc/stat")?.split("\n")[0]
  if (line === undefined || !line.startsWith("cpu ")) return undefined
  const [user, nice, system, _idle, _iowait, irq, softirq, steal] = line.split(/\s+/).slice(1).map(Number)
  return (user + nice + system + irq + softirq + steal) * TICK_MS
}

/** CPU ms this process (the generator) has used. */
export const ownCpuMs = (): number => {
  const { system, user } = process.cpuUsage()
  return (user + system) / 1000
}

export interface CpuReading {
  readonly server: number | undefined
  readonly machine: number | undefined
  readonly generator: number
}

export const readCpu = (serverPid: number | undefined): CpuReading => ({
  server: serverPid === undefined ? undefined : processCpuMs(serverPid),
  machine: machineBusyMs(),
  generator: ownCpuMs()
})

/** CPU ms per request between two readings: the server's, and the rest of the machine's but the generator's. */
export interface CpuPerRequest {
  readonly serverMs: number | undefined
  readonly restMs: number | undefined
}

export const cpuPerRequest = (from: CpuReading, to: CpuReading, requests: number): CpuPerRequest => {
  if (requests <= 0) return { serverMs: undefined, restMs: undefined }
  const server = from.server !== undefined && to.server !== undefined ? to.server - from.server : undefined
  const machine = from.machine !== undefined && to.machine !== undefined ? to.machine - from.machine : undefined
  return {
    serverMs: server === undefined ? undefined : server / requests,
    restMs: machine === undefined
      ? undefined
      : Math.max(0, machine - (server ?? 0) - (to.generator - from.generator)) / requests
  }
}
