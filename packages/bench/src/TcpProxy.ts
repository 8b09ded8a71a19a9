/**
 * A TCP proxy in front of PostgreSQL, for `bench chaos`'s network fault. It
 * forwards, or it goes silent: nothing is forwarded either way and nothing is
 * reset, and new connections are accepted and left unanswered, as a network
 * that drops every packet looks to the server. Bytes sent meanwhile are held,
 * not lost (TCP retransmits across a partition), and flow on when it forwards
 * again, over the same connections.
 */
import { Effect, type Scope } from "effect"
import { connect, createServer, type Server, type Socket } from "node:net"
import { attempt, type BenchError } from "./BenchError.ts"
import { HOST } from "./Server.ts"

export interface TcpProxy {
  readonly port: number
  /** Stops forwarding: every connection, open or new, hangs. */
  readonly silence: () => void
  /** Forwards again, on the connections already open and the ones held meanwhile. */
  readonly restore: () => void
}

interface Pair {
  readonly client: Socket
  upstream: Socket | undefined
}

export const tcpProxy = (target: { readonly host: string; readonly port: number }): Effect.Effect<
  TcpProxy,
  BenchError,
  Scope.Scope
> =>
  Effect.acquireRelease(
    attempt(async () => {
      const pairs = new Set<Pair>()
      let silent = false
      const join = (pair: Pair) => {
        const upstream = connect(target.port, target.host)
        pair.upstream = upstream
        upstream.on("error", () => pair.client.destroy())
        upstream.on("close", () => pair.client.destroy())
        pair.client.pipe(upstream).pipe(pair.client)
      }
      const server: Server = createServer((client) => {
        const pair: Pair = { client, upstream: undefined }
        pairs.add(pair)
        client.on("error", () => pair.upstream?.destroy())
        client.on("close", () => {
          pair.upstream?.destroy()
          pairs.delete(pair)
        })
        if (silent) client.pause()
        else join(pair)
      })
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject)
        server.listen(0, HOST, resolve)
      })
      const proxy: TcpProxy & { readonly close: () => Promise<void> } = {
        port: (server.address() as { port: number }).port,
        silence: () => {
          silent = true
          for (const { client, upstream } of pairs) {
            if (upstream === undefined) continue
            client.unpipe(upstream)
            upstream.unpipe(client)
            client.pause()
            upstream.pause()
          }
        },
        restore: () => {
          silent = false
          for (const pair of pairs) {
            if (pair.upstream === undefined) join(pair)
            else {
              pair.client.pipe(pair.upstream)
              pair.upstream.pipe(pair.client)
            }
          }
        },
        close: () =>
          new Promise<void>((resolve) => {
            for (const { client, upstream } of pairs) {
              client.destroy()
              upstream?.destroy()
            }
            server.close(() => resolve())
          })
      }
      return proxy
    }),
    (proxy) => Effect.promise(() => proxy.close())
  )
