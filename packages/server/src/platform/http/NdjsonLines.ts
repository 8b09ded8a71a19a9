/**
 * Splits a body into NDJSON lines as its chunks arrive, holding at most one
 * line: `\n` ends a line and a `\r` before it is dropped (CRLF), a UTF-8 BOM
 * opening the first line is dropped, and the last line needs no newline.
 * A line longer than `maxLineBytes` is not held: it is reported by its length
 * alone, and its bytes are skipped up to the next newline.
 */

export interface Line {
  /** From 1; blank lines count. */
  readonly number: number
  /** The line without its line ending; undefined when it was longer than allowed. */
  readonly bytes: Buffer | undefined
  /** Its length in bytes, line ending left out. */
  readonly length: number
}

const NEWLINE = 0x0a
const CR = 0x0d

export class LineSplitter {
  private parts: Array<Buffer> = []
  private length = 0
  private number = 0
  private overlong = false
  private readonly maxLineBytes: number
  constructor(maxLineBytes: number) {
    this.maxLineBytes = maxLineBytes
  }

  /** Calls `f` with each line `chunk` completes, in order. */
  push(chunk: Buffer, f: (line: Line) => void): void {
    let start = 0
    for (;;) {
      const end = chunk.indexOf(NEWLINE, start)
      if (end === -1) {
        this.append(chunk, start, chunk.length)
        return
      }
      this.append(chunk, start, end)
      this.emit(f)
      start = end + 1
    }
  }

  /** At the end of the body: the last line, when it had no newline. */
  end(f: (line: Line) => void): void {
    if (this.length > 0) this.emit(f)
  }

  private append(chunk: Buffer, start: number, end: number) {
    if (end === start) return
    this.length += end - start
    if (this.overlong) return
    // One byte of slack: a CR that the newline will show to be a line ending.
    if (this.length > this.maxLineBytes + 1) {
      this.overlong = true
      this.parts = []
      return
    }
    this.parts.push(chunk.subarray(start, end))
  }

  private emit(f: (line: Line) => void) {
    this.number++
    let bytes: Buffer | undefined
    let length = this.length
    if (!this.overlong) {
      let line = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.length)
      if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1)
      if (this.number === 1 && line.length >= 3 && line[0] === 0xef && line[1] === 0xbb && line[2] === 0xbf) {
        line = line.subarray(3)
      }
      length = line.length
      bytes = length > this.maxLineBytes ? undefined : line
    }
    this.parts = []
    this.length = 0
    this.overlong = false
    f({ number: this.number, bytes, length })
  }
}
