/**
 * One instance of the user service: a node:http server that reads users through an
 * `InvalidatingCache` and, on PUT, updates the row and invalidates its key in the same
 * transaction, so every instance evicts it when (and only if) the update commits.
 *
 *   DATABASE_URL=postgres://… PORT=3001 INSTANCE=a node --conditions=@herald/source --import tsx src/server.ts
 *
 * `src/main.ts` (`pnpm start`) creates the table and starts two of these.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Herald } from '@herald/core'
import { InvalidatingCache } from '@herald/lru'
import postgres from 'postgres'
import { SCHEMA, userKey, type User } from './users.js'

const url = process.env['DATABASE_URL']
if (!url) {
  process.stderr.write('server.ts needs DATABASE_URL (or run `pnpm start`, which starts PostgreSQL)\n')
  process.exit(2)
}
const port = Number(process.env['PORT'] ?? 3001)
const instance = process.env['INSTANCE'] ?? String(port)
const MAX_BODY_BYTES = 16 * 1024

function log(line: string): void {
  process.stdout.write(`${line}\n`)
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

// The app's own pool: queries, transactions, and Herald's publishes. Herald adds exactly one
// connection of its own, the listener, shared by every cache (and lock, and config store).
const sql = postgres(url, { max: 5, onnotice: () => {} })
const herald = new Herald({ connection: url, sql, applicationName: `example-http-${instance}` })
herald.on('disconnected', ({ error }) =>
  log(`listener lost (${error.code}): serving from PostgreSQL meanwhile`),
)
herald.on('reconnected', ({ downtimeMs }) => log(`listener back after ${downtimeMs} ms: cache flushed`))
herald.on('error', (error) => log(`herald error ${error.code}: ${error.message}`))

const users = new InvalidatingCache<User>({
  herald,
  // The cache name scopes keys: instances sharing it invalidate each other.
  name: `${SCHEMA}.users`,
  max: 10_000,
  ttl: 10 * 60_000,
})
users.on('evict', ({ key, reason }) => {
  // Invalidations (from any instance) and flushes after a gap are the point; entries
  // replaced, expired or dropped on close are routine.
  if (reason !== 'set' && reason !== 'lru' && reason !== 'ttl' && reason !== 'delete') {
    log(`evicted ${key} (${reason})`)
  }
})
users.on('error', (error) => log(`cache error ${error.code}: ${error.message}`))

async function loadUser(id: number): Promise<User> {
  const [user] = await sql<User[]>`select id, name, email from ${sql(`${SCHEMA}.users`)} where id = ${id}`
  if (user === undefined) throw new HttpError(404, `no user ${id}`)
  return user
}

async function readBody(request: IncomingMessage): Promise<unknown> {
  let body = ''
  for await (const chunk of request as AsyncIterable<Buffer>) {
    body += chunk.toString('utf8')
    if (body.length > MAX_BODY_BYTES) throw new HttpError(413, 'body too large')
  }
  try {
    return JSON.parse(body) as unknown
  } catch {
    throw new HttpError(400, 'the body must be JSON')
  }
}

/** `{ name?, email? }` with at least one of them, each a non-empty string. */
function parseUpdate(body: unknown): { name?: string; email?: string } {
  if (typeof body !== 'object' || body === null) throw new HttpError(400, 'expected a JSON object')
  const update: { name?: string; email?: string } = {}
  for (const field of ['name', 'email'] as const) {
    const value = (body as Record<string, unknown>)[field]
    if (value === undefined) continue
    if (typeof value !== 'string' || value.trim() === '') {
      throw new HttpError(400, `${field} must be a non-empty string`)
    }
    update[field] = value
  }
  if (Object.keys(update).length === 0) throw new HttpError(400, 'give a name or an email')
  return update
}

function send(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  response.writeHead(status, { 'content-type': 'application/json', 'x-instance': instance, ...headers })
  response.end(JSON.stringify(body))
}

async function route(request: IncomingMessage, response: ServerResponse): Promise<string> {
  const path = new URL(request.url ?? '/', 'http://localhost').pathname
  if (request.method === 'GET' && path === '/stats') {
    send(response, 200, { cache: users.stats(), herald: herald.stats() })
    return '200'
  }
  const match = /^\/users\/(\d{1,9})$/.exec(path)
  if (match === null) throw new HttpError(404, 'try GET or PUT /users/:id')
  const id = Number(match[1])
  const key = userKey(id)

  if (request.method === 'GET') {
    // `has` counts nothing; it only tells the response header whether this was a hit.
    const cached = users.has(key)
    const user = await users.getOrLoad(key, () => loadUser(id))
    send(response, 200, user, { 'x-cache': cached ? 'hit' : 'miss' })
    return `200 ${cached ? 'hit' : 'miss'}`
  }

  if (request.method === 'PUT') {
    const update = parseUpdate(await readBody(request))
    const user = await sql.begin(async (tx) => {
      const [row] = await tx<User[]>`
        update ${tx(`${SCHEMA}.users`)} set ${tx(update)} where id = ${id}
        returning id, name, email`
      if (row === undefined) throw new HttpError(404, `no user ${id}`)
      // Part of the transaction: every instance evicts on commit, none on rollback; until
      // the commit this instance does not cache what it reads for the key.
      await users.invalidate(key, { tx })
      return row
    })
    send(response, 200, user)
    return `200 updated, ${key} invalidated on commit`
  }
  throw new HttpError(405, `${request.method ?? 'this method'} is not supported`)
}

const server = createServer((request, response) => {
  const started = performance.now()
  route(request, response).then(
    (outcome) => {
      const ms = (performance.now() - started).toFixed(1)
      log(`${request.method} ${request.url} → ${outcome} (${ms} ms)`)
    },
    (error: unknown) => {
      const status = error instanceof HttpError ? error.status : 500
      const message = error instanceof Error ? error.message : String(error)
      if (!response.headersSent) send(response, status, { error: message })
      else response.end()
      log(`${request.method} ${request.url} → ${status} ${message}`)
    },
  )
})

let stopping = false
async function stop(): Promise<void> {
  if (stopping) return
  stopping = true
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  await users.close()
  await herald.close()
  await sql.end({ timeout: 2 })
  log('stopped')
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void stop())

try {
  await herald.start()
  await users.ready()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', resolve)
  })
  log(`listening on http://127.0.0.1:${(server.address() as AddressInfo).port}`)
} catch (error) {
  log(`could not start: ${error instanceof Error ? error.message : String(error)}`)
  await stop()
  process.exitCode = 1
}
