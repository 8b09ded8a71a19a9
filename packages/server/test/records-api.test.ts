import { backends, makeSocketApp, makeTestApp, memory, postgres } from "@strata/testing"
import { describeRecordsApi } from "./support/RecordsContract.ts"

describeRecordsApi("records API", backends, (db) => makeTestApp(db.layer))

// The same contract over a real socket, as main serves it: the hot routes answer
// what they can (cached reads, plain writes) and hand the rest to the app.
describeRecordsApi("records API over a socket with the hot routes", [memory, postgres], (db) => makeSocketApp(db.layer))
