/**
 * One instance running the daily report job. Every instance runs it at the same time (a
 * cron on each app server, a deploy starting them together); the lock makes exactly one of
 * them build the report, and the others wait for that build to finish — woken by the
 * release, no polling — and read its result.
 *
 *   DATABASE_URL=postgres://… WORKER=worker-1 node --conditions=@herald/source --import tsx src/worker.ts
 *
 * Started by src/main.ts (`pnpm start`), which creates the tables and starts several at once.
 */
import { Herald } from '@herald/core'
import { Locks } from '@herald/lock'
import postgres from 'postgres'
import { buildReport, formatCents, lockName, readReport, REPORT_DAY, type StoredReport } from './report.js'

const url = process.env['DATABASE_URL']
if (!url) {
  process.stderr.write('worker.ts needs DATABASE_URL (or run `pnpm start`, which starts PostgreSQL)\n')
  process.exit(2)
}
const worker = process.env['WORKER'] ?? `worker-${process.pid}`
const buildDelayMs = Number(process.env['REPORT_BUILD_MS'] ?? 1_500)
/** How long an instance waits for another's build before giving up. */
const WAIT_TIMEOUT_MS = 60_000

function log(line: string): void {
  process.stdout.write(`${line}\n`)
}

const sql = postgres(url, { max: 2, onnotice: () => {} })
const herald = new Herald({ connection: url, sql, applicationName: `example-report-${worker}` })
herald.on('error', (error) => log(`herald error ${error.code}: ${error.message}`))
const locks = new Locks({ herald, applicationName: `example-report-${worker}` })
locks.on('lost', ({ name }) => log(`lost ${name}: its session closed`))

type Role = 'built' | 'waited' | 'found'

async function build(lock: { token: bigint; signal: AbortSignal }): Promise<StoredReport> {
  log(`building the ${REPORT_DAY} report (holding the lock, fencing token ${lock.token})`)
  await buildReport(sql, REPORT_DAY, {
    token: lock.token,
    builtBy: worker,
    delayMs: buildDelayMs,
    signal: lock.signal,
  })
  const report = await readReport(sql, REPORT_DAY)
  if (report === undefined) throw new Error('the report is missing right after it was stored')
  log(`built in ${report.buildMs} ms, stored with fencing token ${report.token}; releasing the lock`)
  return report
}

async function runJob(): Promise<{ report: StoredReport; role: Role }> {
  const name = lockName(REPORT_DAY)
  const existing = await readReport(sql, REPORT_DAY)
  if (existing !== undefined) return { report: existing, role: 'found' }

  const lock = await locks.tryAcquire(name)
  if (lock !== undefined) {
    // This instance builds. (Not `withLock` here: that would queue the other instances as
    // builders behind it, each re-checking in turn; they should only wait and read.)
    try {
      return { report: await build(lock), role: 'built' }
    } finally {
      await lock.release()
    }
  }

  log(`${name} is held by another instance: waiting for its release`)
  const started = performance.now()
  await locks.waitForRelease(name, { timeoutMs: WAIT_TIMEOUT_MS })
  log(`released after ${Math.round(performance.now() - started)} ms`)
  const built = await readReport(sql, REPORT_DAY)
  if (built !== undefined) return { report: built, role: 'waited' }

  // The builder let go without a report (it failed, or crashed and the server released its
  // lock), or a forged release woke us early: build it here, under the lock, unless another
  // instance has by the time we hold it.
  log('no report after the release: taking the lock to build it, unless someone else has')
  let builtHere = false
  const report = await locks.withLock(
    name,
    async (held) => {
      const again = await readReport(sql, REPORT_DAY)
      if (again !== undefined) return again
      builtHere = true
      return build(held)
    },
    { timeoutMs: WAIT_TIMEOUT_MS },
  )
  return { report, role: builtHere ? 'built' : 'waited' }
}

try {
  await herald.start()
  // Started by main.ts: wait for its signal, so that every instance runs the job at once.
  if (process.send !== undefined) {
    const go = new Promise((resolve) => process.once('message', resolve))
    log('ready')
    await go
    process.disconnect()
  }
  const { report, role } = await runJob()
  const { body } = report
  const how = {
    built: 'built it',
    waited: `read the one ${report.builtBy} built`,
    found: `found the one ${report.builtBy} built`,
  }
  log(
    `${how[role]}: ${body.sales.toLocaleString('en-US')} sales in ${body.regions.length} regions, ` +
      `total ${formatCents(body.totalCents)}`,
  )
  log(
    `RESULT role=${role} builtBy=${report.builtBy} token=${report.token} sha256=${report.sha256.slice(0, 16)}`,
  )
} catch (error) {
  log(`failed: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
} finally {
  await locks.close()
  await herald.close()
  await sql.end({ timeout: 2 })
}
