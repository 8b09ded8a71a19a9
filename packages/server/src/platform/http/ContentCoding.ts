/**
 * Compressed request bodies (README: Input limits): `Content-Encoding` gzip,
 * deflate, br or zstd, decoded with node:zlib. Every limit counts the decoded
 * bytes, and decoding stops as soon as they pass it, so a small body that
 * would inflate to gigabytes costs no more than the limit. Any other coding is
 * a 415 (the answer's `Accept-Encoding` names these, RequestId.finish); a
 * stream that does not decode is a 400.
 */
import { MalformedRequest, UnsupportedMediaType } from "@strata/domain"
import { Result } from "effect"
import type { Transform } from "node:stream"
import * as zlib from "node:zlib"

/** The codings a request body may have, as a 415 names them in `Accept-Encoding`. */
export const ACCEPTED_CODINGS = "gzip, deflate, br, zstd"

export type Coding = "gzip" | "deflate" | "br" | "zstd"

const CODINGS: Record<string, Coding | null> = {
  gzip: "gzip",
  "x-gzip": "gzip",
  deflate: "deflate",
  br: "br",
  zstd: "zstd",
  identity: null
}

/**
 * The body's coding: null when it has none (no header, or `identity`), a 415
 * problem for a coding not accepted here, or for more than one (a body is
 * compressed once).
 */
export const codingOf = (header: string | undefined): Result.Result<Coding | null, UnsupportedMediaType> => {
  if (header === undefined) return Result.succeed(null)
  const coding = CODINGS[header.trim().toLowerCase()]
  if (coding !== undefined) return Result.succeed(coding)
  const shown = header.length > 50 ? `${header.slice(0, 50)}…` : header
  return Result.fail(
    new UnsupportedMediaType({
      detail: `Content-Encoding ${JSON.stringify(shown)} is not accepted; send one of ${ACCEPTED_CODINGS}, or none`
    })
  )
}

/** Zlib's default chunk: the most a decoder holds past a limit before it is stopped. */
const CHUNK = 16 * 1024

/** A decoder for `coding`, to pipe a body through as it arrives. */
export const decoderFor = (coding: Coding): Transform => {
  switch (coding) {
    case "gzip":
      return zlib.createGunzip({ chunkSize: CHUNK })
    case "deflate":
      return zlib.createInflate({ chunkSize: CHUNK })
    case "br":
      return zlib.createBrotliDecompress({ chunkSize: CHUNK })
    case "zstd":
      return zlib.createZstdDecompress({ chunkSize: CHUNK })
  }
}

/** The 400 of a body that does not decode as it says. */
export const corruptBody = (coding: Coding): MalformedRequest =>
  new MalformedRequest({ detail: `The body is not valid ${coding} data (Content-Encoding: ${coding})` })

const decodeSync = (coding: Coding, bytes: Uint8Array, maxOutputLength: number): Buffer => {
  const options = { maxOutputLength }
  switch (coding) {
    case "gzip":
      return zlib.gunzipSync(bytes, options)
    case "deflate":
      return zlib.inflateSync(bytes, options)
    case "br":
      return zlib.brotliDecompressSync(bytes, options)
    case "zstd":
      return zlib.zstdDecompressSync(bytes, options)
  }
}

/**
 * A whole (small) body decoded, at most `maxBytes` of output: "TooLarge" past
 * them (decoding stopped there), "Corrupt" when it does not decode.
 */
export const decodeWhole = (
  coding: Coding,
  bytes: Uint8Array,
  maxBytes: number
): Result.Result<Buffer, "TooLarge" | "Corrupt"> => {
  try {
    // One byte more than allowed: the output stops there, and its length says the body is over.
    const out = decodeSync(coding, bytes, maxBytes + 1)
    return out.length > maxBytes ? Result.fail("TooLarge") : Result.succeed(out)
  } catch (error) {
    return Result.fail((error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE" ? "TooLarge" : "Corrupt")
  }
}
