/**
 * Starts PostgreSQL (unless DATABASE_URL is set), creates a day of sales, starts several
 * instances of the report job (src/worker.ts) as separate processes and lets them run it at
 * the same moment. Exactly one builds the report under the lock; the others wait for its
 * release and read what it built. Checks that, prints a summary and exits (0 when it held).
 *
 *   pnpm start                    three instances
 *   pnpm start -- --workers 5     five
 */
import { parseArgs } from 'node:util'
import { startPostgres, type PgServer } from '@herald/testing'
import { Child } from '@herald/example-support'
import { createTables, dropTables, formatCents, readReport, REPORT_DAY, SCHEMA } from './report.js'

const { values: args } = parseArgs({ options: { workers: { type: 'string', default: '3' } } })
const workerCount = Number(args.workers)
if (!Number.isInteger(workerCount) || workerCount < 2 || workerCount > 20) {
  process.stderr.write('--workers takes a number from 2 to 20\n')
  process.exit(2)
}
const STARTUP_TIMEOUT_MS = 20_000
const JOB_TIMEOUT_MS = 60_000

function say(line = ''): void {
  process.stdout.write(`${line}\n`)
}

interface Result {
  readonly worker: string
  readonly role: string
  readonly builtBy: string
  readonly token: string
  readonly sha256: string
}

let server: PgServer | undefined
const children: Child[] = []
let failed = false

try {
  server = await startPostgres({ label: 'example-report' })
  say(`PostgreSQL: ${server.embedded ? `embedded, 127.0.0.1:${server.port}` : 'DATABASE_URL'}`)
  await createTables(server.sql)
  say(`tables ${SCHEMA}.sales (2,000 sales on ${REPORT_DAY}) and ${SCHEMA}.reports (empty)`)
  say()

  say(`Starting ${workerCount} instances of the report job`)
  for (let index = 1; index <= workerCount; index++) {
    const worker = `worker-${index}`
    children.push(
      new Child(
        worker,
        new URL('./worker.ts', import.meta.url),
        { DATABASE_URL: server.url, WORKER: worker, EXAMPLE_SCHEMA: SCHEMA },
        { ipc: true },
      ),
    )
  }
  await Promise.all(children.map((child) => child.waitForLine(/^ready$/, { timeoutMs: STARTUP_TIMEOUT_MS })))
  say('All connected: go')
  for (const child of children) child.send('go')

  const results: Result[] = await Promise.all(
    children.map(async (child) => {
      const match = await child.waitForLine(/^RESULT role=(\S+) builtBy=(\S+) token=(\S+) sha256=(\S+)$/, {
        timeoutMs: JOB_TIMEOUT_MS,
      })
      const [, role = '', builtBy = '', token = '', sha256 = ''] = match
      return { worker: child.name, role, builtBy, token, sha256 }
    }),
  )
  const exits = await Promise.all(children.map((child) => child.exited))
  say()

  const builders = results.filter((result) => result.role === 'built')
  const waiters = results.filter((result) => result.role === 'waited')
  const stored = await readReport(server.sql, REPORT_DAY)
  const checks: [boolean, string][] = [
    [exits.every((exit) => exit.code === 0), `every instance exited with code 0`],
    [
      builders.length === 1,
      `exactly one instance built the report (${builders.map((b) => b.worker).join(', ') || 'none'})`,
    ],
    [
      stored !== undefined && results.every((result) => result.sha256 === stored.sha256.slice(0, 16)),
      'every instance read the same report, the one stored',
    ],
    [
      results.every((result) => result.builtBy === builders[0]?.worker),
      `every instance names ${builders[0]?.worker ?? 'the builder'} as its builder`,
    ],
  ]
  for (const [held, what] of checks) {
    say(`${held ? '✓' : '✗'} ${what}`)
    if (!held) failed = true
  }
  if (stored !== undefined) {
    say(
      `  report ${REPORT_DAY}: total ${formatCents(stored.body.totalCents)} over ${stored.body.sales.toLocaleString('en-US')} sales, ` +
        `built by ${stored.builtBy} in ${stored.buildMs} ms under fencing token ${stored.token}`,
    )
  }
  say(
    `  ${waiters.length} instance(s) waited for the release and read it; ${results.length - 1 - waiters.length} found it already built`,
  )
} catch (error) {
  failed = true
  process.stderr.write(
    `report-job example failed: ${error instanceof Error ? error.message : String(error)}\n`,
  )
} finally {
  await Promise.all(children.map((child) => child.stop()))
  if (server !== undefined) {
    if (!server.embedded) await dropTables(server.sql)
    await server.close()
  }
  say(failed ? '✗ failed' : '✓ done')
  process.exitCode = failed ? 1 : 0
}
