import type net from 'node:net'
import type { Sql } from 'postgres'
import { openSocket, type SocketTarget } from './internal/socket.js'

/**
 * The local ports of a client's sockets, opened through {@link LocalPorts.socket}. The server
 * reports the port its TCP peer connects from (`inet_client_port()`): one of ours means a
 * direct connection; any other means a proxy (PgBouncer, a cloud pooler) opened the backend's
 * connection, and may run the steps of one statement on different backends.
 */
export class LocalPorts {
  readonly #ports = new Set<number>()
  readonly #timeoutMs: number

  constructor(connectTimeoutMs: number) {
    this.#timeoutMs = connectTimeoutMs
  }

  /** postgres.js's `socket` option. */
  readonly socket = async (target: SocketTarget): Promise<net.Socket> => {
    const socket = await openSocket(target, this.#timeoutMs)
    const port = socket.localPort
    if (port !== undefined) {
      this.#ports.add(port)
      socket.once('close', () => this.#ports.delete(port))
    }
    return socket
  }

  /** Whether `sql`'s connection reaches the server through something that opened its own. */
  async proxied(sql: Sql<Record<string, unknown>>): Promise<boolean> {
    const [row] = await sql.unsafe<{ port: number | null }[]>('select inet_client_port() as port', [], {
      prepare: false,
    })
    // A Unix socket has no port: nothing sits in between.
    if (row === undefined || row.port === null) return false
    return !this.#ports.has(row.port)
  }
}
