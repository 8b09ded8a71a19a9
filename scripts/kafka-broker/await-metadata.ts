/**
 * `node await-metadata.ts HOST:PORT PID SECONDS [BROKERS]`: waits until the
 * broker at HOST:PORT answers a metadata request naming BROKERS brokers (by
 * default 1: itself), for scripts/kafka start. Exits 0 then, 1 when PID (the
 * broker's JVM) dies or SECONDS pass first.
 */
import { Admin } from "@platformatic/kafka"

const [broker, pid, seconds, brokers = "1"] = process.argv.slice(2)
const deadline = Date.now() + Number(seconds) * 1000
const alive = () => {
  try {
    process.kill(Number(pid), 0)
    return true
  } catch {
    return false
  }
}

while (Date.now() < deadline && alive()) {
  const admin = new Admin({ clientId: "strata-kafka-script", bootstrapBrokers: [broker], retries: 0, timeout: 2000 })
  try {
    const metadata = await admin.metadata({ topics: [] })
    if (metadata.brokers.size >= Number(brokers)) process.exit(0)
  } catch {
    // not up yet
  } finally {
    await admin.close().catch(() => undefined)
  }
  await new Promise((resolve) => setTimeout(resolve, 300))
}
process.exit(1)
