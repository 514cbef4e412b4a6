import net from 'node:net'

/** The parts of postgres.js's parsed options that say where to connect. */
export interface SocketTarget {
  readonly host: readonly string[]
  readonly port: readonly number[]
  readonly path?: string | false
}

/**
 * Opens the TCP (or Unix) socket for postgres.js ourselves. Owning it is what lets the
 * heartbeat destroy a half-open connection at once: postgres.js can only `end()` a socket,
 * which on a peer that stopped answering waits for a FIN that never comes.
 */
export async function openSocket(target: SocketTarget, timeoutMs: number, rotation = 0): Promise<net.Socket> {
  const hosts: net.NetConnectOpts[] = target.path
    ? [{ path: target.path }]
    : target.host.map((host, index) => ({ host, port: target.port[index] ?? target.port[0] ?? 5432 }))
  // Rotating the first host lets a reconnect move on from a host that answers but is a standby.
  const first = rotation % hosts.length
  const candidates = [...hosts.slice(first), ...hosts.slice(0, first)]
  let lastError: unknown = new Error('no host to connect to')
  for (const candidate of candidates) {
    try {
      return await connect(candidate, timeoutMs)
    } catch (error) {
      lastError = error
    }
  }
  throw lastError
}

function connect(options: net.NetConnectOpts, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ ...options, noDelay: true, keepAlive: true, keepAliveInitialDelay: 10_000 })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`connect timed out after ${timeoutMs} ms`))
    }, timeoutMs)
    timer.unref()
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.removeAllListeners('error')
      resolve(socket)
    })
    socket.once('error', (error) => {
      clearTimeout(timer)
      socket.destroy()
      reject(error)
    })
  })
}
