/**
 * Starts PostgreSQL (unless DATABASE_URL is set), creates the users table, starts two
 * instances of the service (src/server.ts) as separate processes, and walks through what
 * they do: a miss, then a hit; a PUT on one instance; the other instance evicting the key
 * and serving the new row. Then it stops everything and exits (0 when every check held), or,
 * with `--serve`, keeps both instances running until Ctrl-C.
 *
 *   pnpm start                      walk through, then exit
 *   pnpm serve                      walk through, then keep serving on :3001 and :3002
 *   pnpm start -- --ports 0,0       any free ports (what the test does)
 */
import { parseArgs } from 'node:util'
import { startPostgres, type PgServer } from '@herald/testing'
import { Child } from '@herald/example-support'
import { createUsers, dropUsers, SCHEMA } from './users.js'

const { values: args } = parseArgs({
  options: {
    serve: { type: 'boolean', default: false },
    ports: { type: 'string', default: '3001,3002' },
  },
})
const ports = args.ports.split(',').map(Number)
if (ports.length !== 2 || ports.some((port) => !Number.isInteger(port) || port < 0 || port > 65_535)) {
  process.stderr.write(`--ports takes two port numbers, such as 3001,3002 (0: any free port)\n`)
  process.exit(2)
}
const STEP_TIMEOUT_MS = 15_000

function say(line = ''): void {
  process.stdout.write(`${line}\n`)
}

interface Response {
  readonly status: number
  readonly cache: string | null
  readonly instance: string | null
  readonly body: Record<string, unknown>
}

async function request(base: string, method: 'GET' | 'PUT', path: string, body?: unknown): Promise<Response> {
  say(`${method} ${base}${path}${body === undefined ? '' : ` ${JSON.stringify(body)}`}`)
  const response = await fetch(`${base}${path}`, {
    method,
    ...(body === undefined
      ? {}
      : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  })
  const result: Response = {
    status: response.status,
    cache: response.headers.get('x-cache'),
    instance: response.headers.get('x-instance'),
    body: (await response.json()) as Record<string, unknown>,
  }
  const cache = result.cache === null ? '' : `  X-Cache: ${result.cache}`
  say(`  → ${result.status} ${JSON.stringify(result.body)}${cache}`)
  return result
}

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(`expected ${what}`)
  say(`  ✓ ${what}`)
}

let server: PgServer | undefined
const children: Child[] = []
let failed = false

try {
  server = await startPostgres({ label: 'example-http' })
  say(`PostgreSQL: ${server.embedded ? `embedded, 127.0.0.1:${server.port}` : 'DATABASE_URL'}`)
  await createUsers(server.sql)
  say(`table ${SCHEMA}.users: 3 users`)
  say()

  const url = server.url
  const [a, b] = (['a', 'b'] as const).map((name, index) => {
    const child = new Child(name, new URL('./server.ts', import.meta.url), {
      DATABASE_URL: url,
      PORT: String(ports[index]),
      INSTANCE: name,
      EXAMPLE_SCHEMA: SCHEMA,
    })
    children.push(child)
    return child
  }) as [Child, Child]
  const [baseA, baseB] = (await Promise.all(
    [a, b].map(async (child) => {
      const [, base] = await child.waitForLine(/listening on (http:\/\/\S+)/, { timeoutMs: STEP_TIMEOUT_MS })
      return base as string
    }),
  )) as [string, string]
  say(`instance a: ${baseA}`)
  say(`instance b: ${baseB}`)
  say()

  say('1. Read user 1 on instance a twice: the first loads it from PostgreSQL, the second hits the cache')
  const first = await request(baseA, 'GET', '/users/1')
  check(first.status === 200 && first.cache === 'miss', 'a: a miss, loaded from PostgreSQL')
  const second = await request(baseA, 'GET', '/users/1')
  check(second.cache === 'hit' && second.body['name'] === first.body['name'], 'a: a hit, same user')
  say()

  say('2. Instance b caches it too')
  await request(baseB, 'GET', '/users/1')
  const cachedOnB = await request(baseB, 'GET', '/users/1')
  check(cachedOnB.cache === 'hit', 'b: a hit')
  say()

  say("3. PUT on instance a: update the row and invalidate 'user:1' in one transaction")
  const evictedOnB = b.mark()
  const put = await request(baseA, 'PUT', '/users/1', { name: 'Ada Lovelace' })
  check(put.status === 200 && put.body['name'] === 'Ada Lovelace', 'a: updated')
  // The eviction reaches b a fraction of a millisecond after the commit; b logs it.
  await b.waitForLine(/evicted user:1 \(invalidate\)/, { since: evictedOnB, timeoutMs: STEP_TIMEOUT_MS })
  check(true, 'b: evicted user:1 when the transaction committed')
  say()

  say('4. Read user 1 on instance b: a miss, and the new name')
  const after = await request(baseB, 'GET', '/users/1')
  check(
    after.cache === 'miss' && after.body['name'] === 'Ada Lovelace',
    'b: a miss, loaded afresh: Ada Lovelace',
  )
  const again = await request(baseB, 'GET', '/users/1')
  check(again.cache === 'hit' && again.body['name'] === 'Ada Lovelace', 'b: then a hit again')
  say()
  say('✓ Both instances serve the new row: nothing stale.')

  if (args.serve) {
    say()
    say('Serving until Ctrl-C. Try:')
    say(`  curl -i ${baseA}/users/2`)
    say(`  curl -i ${baseA}/users/2`)
    say(`  curl -i -X PUT ${baseB}/users/2 -H 'content-type: application/json' -d '{"name":"Grace Hopper"}'`)
    say(`  curl -i ${baseA}/users/2`)
    say(`  curl ${baseA}/stats`)
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve)
      process.once('SIGTERM', resolve)
    })
    say()
  }
} catch (error) {
  failed = true
  process.stderr.write(
    `http-service example failed: ${error instanceof Error ? error.message : String(error)}\n`,
  )
} finally {
  const exits = await Promise.all(children.map((child) => child.stop()))
  if (exits.some((exit) => exit.code !== 0)) {
    failed = true
    process.stderr.write(`an instance did not stop cleanly: ${JSON.stringify(exits)}\n`)
  }
  if (server !== undefined) {
    if (!server.embedded) await dropUsers(server.sql)
    await server.close()
  }
  say(failed ? '✗ failed' : 'stopped')
  process.exitCode = failed ? 1 : 0
}
