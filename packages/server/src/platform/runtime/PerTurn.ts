/**
 * Work gathered over one turn of the event loop and done once, after the turn's
 * I/O (the `check` phase, via `setImmediate`): the answers of reads written
 * back to back (AnswerBurst.ts), the uncached reads looked up together
 * (RecordCache.ts). Under load a turn holds the requests of every connection
 * that had something to say, so one pass serves them all.
 */
export const perTurn = <A>(run: (items: ReadonlyArray<A>) => void): (item: A) => void => {
  let items: Array<A> = []
  const flush = () => {
    const due = items
    items = []
    run(due)
  }
  return (item) => {
    items.push(item)
    if (items.length === 1) setImmediate(flush)
  }
}
