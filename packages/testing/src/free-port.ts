import { createServer } from 'node:net'

/**
 * A TCP port that was free a moment ago on 127.0.0.1. Another process can take
 * it before Postgres binds it, so the caller retries on "Address already in use".
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() =>
        port > 0 ? resolve(port) : reject(new Error('could not read the port the OS assigned')),
      )
    })
  })
}
