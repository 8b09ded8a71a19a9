/**
 * The Node HTTP server under the Effect app, with what must be settled below
 * Effect, before a request exists:
 * - the hot routes (HotRoutes.ts) answer first, when they can;
 * - the size of the request line (path and query string) and headers,
 *   MAX_HEADER_BYTES: more is a 431 problem;
 * - a request Node cannot parse is a problem document too (400, 408, 413, 431)
 *   instead of Node's bare status line, with an `X-Request-Id`;
 * - after SIGTERM, connections still open SHUTDOWN_TIMEOUT after the server
 *   stopped accepting are cut: `server.close()` would otherwise wait for a
 *   client that never finishes its request, and the process would not exit.
 */
import { HeadersTooLarge, MalformedRequest, PayloadTooLarge, RequestTimeout } from "@strata/domain"
import { Duration } from "effect"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { Duplex } from "node:stream"
import type { HttpSettings } from "../config/HttpConfig.ts"
import { renderProblem } from "./Problems.ts"
import { requestIdOf } from "./RequestId.ts"

type Problem = HeadersTooLarge | MalformedRequest | PayloadTooLarge | RequestTimeout

const problemFor = (code: string | undefined, maxHeaderBytes: number): Problem => {
  switch (code) {
    case "HPE_HEADER_OVERFLOW":
      return new HeadersTooLarge({
        detail: `The request line and headers may be at most ${maxHeaderBytes} bytes (MAX_HEADER_BYTES)`
      })
    case "HPE_CHUNK_EXTENSIONS_OVERFLOW":
      return new PayloadTooLarge({ detail: "The chunk extensions are too large" })
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return new RequestTimeout({ detail: "The request did not arrive in time" })
    default:
      return new MalformedRequest({ detail: "The request is not valid HTTP/1.1" })
  }
}

/**
 * The raw HTTP response for a request Node could not parse, the problem rendered
 * as every other (Problems.ts); the connection closes after it.
 */
export const clientErrorResponse = (code: string | undefined, maxHeaderBytes: number): string => {
  const problem = problemFor(code, maxHeaderBytes)
  const response = renderProblem(problem, requestIdOf(undefined), { connection: "close" })
  const body = response.body._tag === "Uint8Array" ? Buffer.from(response.body.body).toString("utf8") : ""
  return [
    `HTTP/1.1 ${response.status} ${problem.title}`,
    ...Object.entries(response.headers).map(([name, value]) => `${name}: ${value}`),
    "",
    body
  ].join("\r\n")
}

/** Hands a request (its body replayed, when it was read) to the app. */
export type HandOver = (request: IncomingMessage) => void

/**
 * Routes served straight from Node's `request` event, ahead of the app: `serve`
 * answers true when it took the request (it answers it, or hands it over).
 */
export interface FastPath {
  readonly serve: (request: IncomingMessage, response: ServerResponse, handOver: HandOver) => boolean
}

export const makeNodeServer = (
  config: Pick<HttpSettings, "maxHeaderBytes" | "shutdownTimeout">,
  hot?: FastPath
): Server => {
  const server = createServer({ maxHeaderSize: config.maxHeaderBytes })
  if (hot !== undefined) {
    // The hot routes see each request first; the app (attached by NodeHttpServer) gets the rest.
    const emit = server.emit.bind(server)
    server.emit = ((event: string, ...args: Array<unknown>) => {
      if (event !== "request") return emit(event, ...args)
      const [request, response] = args as [IncomingMessage, ServerResponse]
      return hot.serve(request, response, (replay) => emit("request", replay, response)) || emit(event, ...args)
    }) as Server["emit"]
  }
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex & { bytesWritten?: number }) => {
    // As Node does by default: answer only while nothing was written on the
    // connection (a response may be under way on it), then close it.
    if (error.code !== "ECONNRESET" && socket.writable && socket.bytesWritten === 0) {
      socket.end(clientErrorResponse(error.code, config.maxHeaderBytes))
      // Closing at once, with the rest of the request unread, would reset the
      // connection and could destroy the answer before the client reads it.
      setTimeout(() => socket.destroy(), 1000).unref()
    } else {
      socket.destroy()
    }
  })
  const close = server.close.bind(server)
  server.close = ((callback?: (error?: Error) => void) => {
    setTimeout(() => server.closeAllConnections(), Duration.toMillis(config.shutdownTimeout)).unref()
    return close(callback)
  }) as Server["close"]
  return server
}
