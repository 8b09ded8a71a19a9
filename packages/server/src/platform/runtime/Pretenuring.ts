/**
 * Turns V8's allocation-site pretenuring off for the server process; main.ts
 * imports this first, so it holds before any code has run long enough to be
 * judged (docs/PERFORMANCE.md, "Since: pretenuring off").
 *
 * Why: pretenuring puts the objects of an allocation site straight into the old
 * generation once most of them were seen surviving a scavenge. Under a long
 * read (an export, pages walked by cursor, a bulk body) such old objects end up
 * pointing at the young rows and strings of a page, and a scavenge keeps
 * everything an old object points at, dead or not, until the next full
 * collection. Nearly every row got promoted: the old generation grew to four
 * times what was live, and collecting it cost about half the export's CPU.
 *
 * A `--allocation-site-pretenuring` given to node on its command line wins.
 */
import { setFlagsFromString } from "node:v8"

if (!process.execArgv.some((flag) => flag.includes("allocation-site-pretenuring"))) {
  setFlagsFromString("--no-allocation-site-pretenuring")
}
