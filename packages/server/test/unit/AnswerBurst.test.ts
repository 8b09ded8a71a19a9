/** Answers of one turn of the event loop are written together, after that turn's I/O, in order. */
import type { ServerResponse } from "node:http"
import { setImmediate as nextTurn } from "node:timers/promises"
import { describe, expect, it } from "vitest"
import { makeAnswerBurst } from "../../src/platform/http/AnswerBurst.ts"

const responseNamed = (name: string) => ({ name }) as unknown as ServerResponse

describe("AnswerBurst", () => {
  it("writes a turn's answers after it, in the order they were made, and each turn's once", async () => {
    const written: Array<string> = []
    const burst = makeAnswerBurst(() => expect.unreachable())
    for (const name of ["a", "b", "c"]) burst(responseNamed(name), () => written.push(name))
    expect(written).toEqual([])
    await nextTurn()
    expect(written).toEqual(["a", "b", "c"])
    burst(responseNamed("d"), () => written.push("d"))
    await nextTurn()
    await nextTurn()
    expect(written).toEqual(["a", "b", "c", "d"])
  })

  it("gives a write that throws to onDefect with its response, and still writes the others", async () => {
    const written: Array<string> = []
    const defects: Array<[unknown, ServerResponse]> = []
    const burst = makeAnswerBurst((error, response) => defects.push([error, response]))
    const broken = responseNamed("broken")
    const failure = new Error("bad header")
    burst(responseNamed("a"), () => written.push("a"))
    burst(broken, () => {
      throw failure
    })
    burst(responseNamed("c"), () => written.push("c"))
    await nextTurn()
    expect(written).toEqual(["a", "c"])
    expect(defects).toEqual([[failure, broken]])
  })
})
