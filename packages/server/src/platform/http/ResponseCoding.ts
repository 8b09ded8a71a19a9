/**
 * Compressed answers (README: The API): a response that may be large (a list
 * page, an export) is sent with the best coding the client's
 * `Accept-Encoding` allows among zstd, br and gzip; a page is compressed
 * whole, an export as it streams. Levels favour speed: these are sent once,
 * and an export is bound by CPU.
 */
import { Effect, Stream } from "effect"
import { HttpServerResponse } from "effect/http"
import { pipeline, Readable } from "node:stream"
import * as zlib from "node:zlib"

export type ResponseCoding = "zstd" | "br" | "gzip"

/** The order chosen among codings the client weighs alike. */
const PREFERENCE: ReadonlyArray<ResponseCoding> = ["zstd", "br", "gzip"]

/** Below this, a body is sent as it is: compressing would save next to nothing. */
const MIN_BYTES = 1024

/** The coding to answer with: the client's highest weighted one we have, none when it accepts none. */
export const responseCodingOf = (acceptEncoding: string | undefined): ResponseCoding | null => {
  if (acceptEncoding === undefined || acceptEncoding === "") return null
  const weights = new Map<string, number>()
  for (const part of acceptEncoding.split(",")) {
    const [name, ...params] = part.trim().toLowerCase().split(";")
    const q = params.map((p) => /^\s*q\s*=\s*(.*?)\s*$/.exec(p)?.[1]).find((v) => v !== undefined)
    // A weight that is no number counts as a refusal.
    const weight = q === undefined ? 1 : /^[0-9.]+$/.test(q) ? Number(q) : 0
    weights.set(name.trim(), Number.isNaN(weight) ? 0 : weight)
  }
  let best: ResponseCoding | null = null
  let bestWeight = 0
  for (const coding of PREFERENCE) {
    const weight = weights.get(coding) ?? (coding === "gzip" ? weights.get("*") : undefined) ?? 0
    if (weight > bestWeight) {
      best = coding
      bestWeight = weight
    }
  }
  return best
}

// Each coding at its fastest level: a half to a third of the CPU of the levels
// used before, for output about a tenth larger (docs/PERFORMANCE.md).
const BROTLI = { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 } }
const GZIP = { level: 1 }
const ZSTD = { params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 } }

const encoderFor = (coding: ResponseCoding) => {
  switch (coding) {
    case "zstd":
      return zlib.createZstdCompress(ZSTD)
    case "br":
      return zlib.createBrotliCompress(BROTLI)
    case "gzip":
      return zlib.createGzip(GZIP)
  }
}

const compressSync = (coding: ResponseCoding, bytes: Buffer): Buffer => {
  switch (coding) {
    case "zstd":
      return zlib.zstdCompressSync(bytes, ZSTD)
    case "br":
      return zlib.brotliCompressSync(bytes, BROTLI)
    case "gzip":
      return zlib.gzipSync(bytes, GZIP)
  }
}

/** A JSON (or other) text answer, compressed when the client accepts it and it is worth it. */
export const textResponse = (
  text: string,
  options: {
    readonly contentType: string
    readonly headers: Record<string, string>
    readonly acceptEncoding: string | undefined
  }
): HttpServerResponse.HttpServerResponse => {
  const headers = { ...options.headers, vary: "accept-encoding" }
  const coding = responseCodingOf(options.acceptEncoding)
  if (coding === null || text.length < MIN_BYTES) {
    return HttpServerResponse.text(text, { contentType: options.contentType, headers })
  }
  return HttpServerResponse.uint8Array(compressSync(coding, Buffer.from(text)), {
    contentType: options.contentType,
    headers: { ...headers, "content-encoding": coding }
  })
}

/** A streamed answer, compressed as it goes when the client accepts it. */
export const streamResponse = <E>(
  body: Stream.Stream<Uint8Array, E>,
  options: {
    readonly contentType: string
    readonly headers: Record<string, string>
    readonly acceptEncoding: string | undefined
  }
): HttpServerResponse.HttpServerResponse => {
  const headers = { ...options.headers, vary: "accept, accept-encoding" }
  const coding = responseCodingOf(options.acceptEncoding)
  if (coding === null) return HttpServerResponse.stream(body, { contentType: options.contentType, headers })
  // Through node:zlib and back: the body is pulled as the encoder takes it, and
  // interrupting the answer (a client gone) ends the encoder and the body's read.
  const compressed = Stream.unwrap(
    Effect.map(Stream.toAsyncIterableEffect(body), (iterable) =>
      Stream.fromAsyncIterable(
        pipeline(Readable.from(iterable, { objectMode: false }), encoderFor(coding), () => {}) as AsyncIterable<
          Uint8Array
        >,
        (error) => error
      ))
  )
  return HttpServerResponse.stream(compressed, {
    contentType: options.contentType,
    headers: { ...headers, "content-encoding": coding }
  })
}
