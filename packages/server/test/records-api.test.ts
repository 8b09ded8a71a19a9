import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freshDatabase, postgresAvailable } from "./support/Postgres.ts"
import { describeRecordsApi } from "./support/RecordsContract.ts"
import { makeTestApp, memoryDb, pgDb, pgliteDb } from "./support/TestApp.ts"

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
