import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freshDatabase, postgresAvailable } from "./support/Postgres.ts"
import { describeRecordsApi } from "./support/RecordsContract.ts"
import { makeSocketApp, makeTestApp, memoryDb, pgDb, pgliteDb } from "./support/TestApp.ts"

describeRecordsApi("records API on the in-memory Db", async () => makeTestApp(memoryDb))

let dropDatabase: () => Promise<void> = async () => {}
describeRecordsApi("records API on PostgreSQL", async () => {
  if (!(await postgresAvailable())) return undefined
  const db = await freshDatabase()
  dropDatabase = db.drop
  return makeTestApp(pgDb(db.url))
}, () => dropDatabase())

const pgliteDir = mkdtempSync(join(tmpdir(), "strata-pglite-"))
describeRecordsApi(
  "records API on the embedded PGlite",
  async () => makeTestApp(pgliteDb(pgliteDir)),
  async () => rmSync(pgliteDir, { recursive: true, force: true })
)

// The same contract over a real socket, as main serves it: the hot routes answer
// what they can (cached reads, plain writes) and hand the rest to the app.
describeRecordsApi("records API over a socket with the hot routes, in memory", () => makeSocketApp(memoryDb))

let dropSocketDatabase: () => Promise<void> = async () => {}
describeRecordsApi("records API over a socket with the hot routes, on PostgreSQL", async () => {
  if (!(await postgresAvailable())) return undefined
  const db = await freshDatabase()
  dropSocketDatabase = db.drop
  return makeSocketApp(pgDb(db.url))
}, () => dropSocketDatabase())
