/**
 * The narrator: starts PostgreSQL (or uses DATABASE_URL), starts two app instances as child
 * processes, drives them through the script below over IPC, checks every step and says what
 * happened. Exit code 0 when every step held, 1 otherwise.
 *
 *   1. start PostgreSQL                 5. messages published after the recovery arrive
 *   2. start instances A and B          6. a 100 KB message arrives intact
 *   3. A → B and B → A                  7. summary, then a clean shutdown
 *   4. kill B's listener connection: B reports `disconnected`, then `reconnected`
 *
 * Every wait is on an event (an IPC report), never a sleep; each step has a timeout.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startPostgres, type PgServer } from '@herald/testing'
import { describeExit, InstanceProcess } from './instance-process.js'
import {
  bold,
  cyan,
  dim,
  FAILED,
  formatLatency,
  formatMs,
  green,
  Narration,
  OK,
  red,
  SKIPPED,
  yellow,
} from './narration.js'
import { ENV, type InstanceName, type Order } from './protocol.js'

const CHANNEL = 'orders'
/** Every step but the first must hold within this. */
const STEP_TIMEOUT_MS = 10_000
/** The first run on a machine also runs initdb for the embedded server. */
const POSTGRES_TIMEOUT_MS = 60_000
/** Each instance must close its Herald and exit within this. */
const SHUTDOWN_TIMEOUT_MS = 10_000
/** Once everything is closed the process should end by itself; if a handle leaks, it is told so and exits. */
const EXIT_GRACE_MS = 2_000
const BLOB_BYTES = 100 * 1024

/** The package directory: children resolve `--import tsx` from there, whatever our cwd. */
const DEMO_DIR = fileURLToPath(new URL('..', import.meta.url))
const INSTANCE_SCRIPT = join(import.meta.dirname, 'instance.ts')

const STEPS = [
  process.env['DATABASE_URL'] ? 'Connect to PostgreSQL (DATABASE_URL)' : 'Start PostgreSQL',
  'Start instances A and B',
  'Exchange messages',
  "Kill B's listener connection",
  'Messages after the recovery',
  'A 100 KB message',
] as const

interface Outcome {
  readonly status: 'held' | 'failed'
  /** What held, or why it failed. */
  readonly text: string
}

class StepFailed extends Error {
  constructor(
    readonly step: number,
    message: string,
    options: ErrorOptions,
  ) {
    super(message, options)
  }
}

const narration = new Narration()
const run = randomBytes(4).toString('hex')
const outcomes: Outcome[] = []
const instances = new Map<InstanceName, InstanceProcess>()
/** Listener backend pid and application_name of each instance, as last reported. */
const listeners = new Map<InstanceName, { backendPid: number; applicationName: string }>()
const latencies: number[] = []
let server: PgServer | undefined
let heraldErrors = 0

function instance(name: InstanceName): InstanceProcess {
  const found = instances.get(name)
  if (found === undefined) throw new Error(`instance ${name} is not running`)
  return found
}

function listener(name: InstanceName): { backendPid: number; applicationName: string } {
  const found = listeners.get(name)
  if (found === undefined) throw new Error(`instance ${name} has not reported its listener`)
  return found
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/**
 * Runs one step with a timeout. The body returns the line the summary shows for it. A step
 * that fails stops the script: the later ones build on it.
 */
async function step(
  number: number,
  timeoutMs: number,
  body: (signal: AbortSignal) => Promise<string>,
): Promise<void> {
  narration.step(number, STEPS[number - 1] ?? '')
  const controller = new AbortController()
  const timeout = new Promise<never>((_, reject) => {
    const timer = setTimeout(() => {
      const error = new Error(`timed out after ${timeoutMs / 1000} s`)
      controller.abort(error)
      // A wait that heeds the signal fails first, naming what it waited for; this is the
      // fallback for work that does not (starting the server).
      setImmediate(() => reject(error))
    }, timeoutMs)
    controller.signal.addEventListener('abort', () => clearTimeout(timer), { once: true })
  })
  timeout.catch(() => {})
  const work = body(controller.signal)
  work.catch(() => {})
  try {
    outcomes.push({ status: 'held', text: await Promise.race([work, timeout]) })
  } catch (error) {
    const message = errorMessage(error)
    narration.detail(`${FAILED} ${red(message.split('\n')[0] ?? message)}`)
    outcomes.push({ status: 'failed', text: message })
    throw new StepFailed(number, message, { cause: error })
  } finally {
    controller.abort()
  }
}

/** `from` publishes an order; resolves with the latency once `to` received it intact. */
async function deliver(
  from: InstanceName,
  to: InstanceName,
  order: Order,
  signal: AbortSignal,
): Promise<number> {
  const sender = instance(from)
  const receiver = instance(to)
  sender.send({ type: 'publish', id: order.id, order })
  const [published, received] = await Promise.all([
    sender.next('published', signal, (report) => report.id === order.id, `order #${order.id}`),
    receiver.next('received', signal, (report) => report.id === order.id, `order #${order.id}`),
  ])
  if (received.report.sha256 !== published.report.sha256) {
    throw new Error(
      `order #${order.id} arrived altered: sha256 ${received.report.sha256} ≠ ${published.report.sha256}`,
    )
  }
  const got = received.report.order
  const what = got === undefined ? `message #${order.id}` : `order #${got.id}: ${got.quantity} × ${got.item}`
  narration.detail(
    `${OK} ${from} → ${to}  ${what}  ${dim(`delivered in ${formatLatency(received.report.latencyUs)}`)}`,
    received.at,
  )
  latencies.push(received.report.latencyUs)
  return received.report.latencyUs
}

function describeServer(url: string): string {
  try {
    const parsed = new URL(url)
    return `${parsed.hostname}:${parsed.port || '5432'}${parsed.pathname}`
  } catch {
    return 'DATABASE_URL'
  }
}

async function startInstance(name: InstanceName, url: string, signal: AbortSignal): Promise<number> {
  const child = new InstanceProcess({
    name,
    script: INSTANCE_SCRIPT,
    cwd: DEMO_DIR,
    env: { ...process.env, [ENV.name]: name, [ENV.url]: url, [ENV.channel]: CHANNEL, [ENV.run]: run },
    now: () => narration.now(),
    onReport: ({ report, at }) => {
      // Background failures are not part of the script: show them as they come.
      if (report.type === 'error') {
        heraldErrors++
        narration.detail(yellow(`${name} emitted 'error' ${report.code}: ${report.message}`), at)
      }
    },
  })
  instances.set(name, child)
  const ready = await child.next('ready', signal)
  child.takeAll('connected')
  const { backendPid, listenerApplicationName } = ready.report
  listeners.set(name, { backendPid, applicationName: listenerApplicationName })
  narration.detail(
    `${OK} ${name} subscribed to "${CHANNEL}"  ${dim(`listener backend pid ${backendPid}, process pid ${child.pid ?? '?'}`)}`,
    ready.at,
  )
  return backendPid
}

async function script(): Promise<void> {
  await step(1, POSTGRES_TIMEOUT_MS, async () => {
    const external = process.env['DATABASE_URL']
    server = await startPostgres(external ? {} : { faults: true, label: 'demo' })
    let row: { server_version: string } | undefined
    try {
      ;[row] = await server.sql<{ server_version: string }[]>`show server_version`
    } catch (error) {
      throw new Error(`cannot reach ${describeServer(server.url)}: ${errorMessage(error)}`, { cause: error })
    }
    const version = `PostgreSQL ${row?.server_version.split(' ')[0] ?? '?'}`
    const where = external
      ? `${describeServer(server.url)} ${dim('(DATABASE_URL)')}`
      : `127.0.0.1:${server.port}`
    narration.detail(`${OK} ${server.embedded ? 'embedded ' : ''}${version} on ${where}`)
    return `${version} ${server.embedded ? 'started (embedded)' : 'reached through DATABASE_URL'}`
  })

  await step(2, STEP_TIMEOUT_MS, async (signal) => {
    const url = (server as PgServer).url
    const [a, b] = await Promise.all([startInstance('A', url, signal), startInstance('B', url, signal)])
    return `A and B each hold one listener connection (backend pids ${a} and ${b})`
  })

  await step(3, STEP_TIMEOUT_MS, async (signal) => {
    const there = await deliver('A', 'B', { id: 1001, item: 'espresso', quantity: 2 }, signal)
    const back = await deliver('B', 'A', { id: 1002, item: 'croissant', quantity: 1 }, signal)
    return `A → B and B → A delivered intact (${formatLatency(there)}, ${formatLatency(back)})`
  })

  await step(4, STEP_TIMEOUT_MS, async (signal) => {
    const b = instance('B')
    const { backendPid, applicationName } = listener('B')
    const sql = (server as PgServer).sql
    narration.detail(
      `pg_terminate_backend(${backendPid})  ${dim(`B's listener session, ${applicationName}`)}`,
    )
    const killedAt = narration.now()
    // Only that pid, and only while it still is B's listener: on a shared server
    // (DATABASE_URL) nothing else may be touched.
    let terminated: { terminated: boolean }[]
    try {
      terminated = await sql<{ terminated: boolean }[]>`
        select pg_terminate_backend(pid) as terminated
        from pg_stat_activity
        where pid = ${backendPid} and application_name = ${applicationName}`
    } catch (error) {
      throw new Error(
        `pg_terminate_backend(${backendPid}) failed: ${errorMessage(error)} ` +
          '(the DATABASE_URL role must be a superuser, or a member of the role of the listener connection)',
        { cause: error },
      )
    }
    if (terminated[0]?.terminated !== true) {
      throw new Error(
        terminated.length === 0
          ? `backend ${backendPid} (${applicationName}) is not in pg_stat_activity`
          : `pg_terminate_backend(${backendPid}) returned false`,
      )
    }
    const lost = await b.next('disconnected', signal)
    narration.detail(
      `B ${cyan('disconnected')} ${formatMs(lost.at - killedAt)} later: ${lost.report.message} ${dim(`(${lost.report.code})`)}`,
      lost.at,
    )
    const back = await b.next('reconnected', signal)
    for (const { report, at } of b.takeAll('reconnecting')) {
      narration.detail(
        `B ${cyan('reconnecting')}: attempt ${report.attempt} in ${formatMs(report.delayMs)}`,
        at,
      )
    }
    b.takeAll('connected')
    const { downtimeMs, backendPid: newPid } = back.report
    if (newPid === backendPid) throw new Error(`B reconnected on the same backend pid ${newPid}`)
    listeners.set('B', { backendPid: newPid, applicationName })
    narration.detail(
      `${OK} B ${cyan('reconnected')}: downtimeMs ${Math.round(downtimeMs)}, new listener backend pid ${newPid}`,
      back.at,
    )
    return `B's listener was killed, B said so, and reconnected after ${formatMs(downtimeMs)} (pid ${backendPid} → ${newPid})`
  })

  await step(5, STEP_TIMEOUT_MS, async (signal) => {
    const there = await deliver('A', 'B', { id: 1003, item: 'flat white', quantity: 3 }, signal)
    const back = await deliver('B', 'A', { id: 1004, item: 'brioche', quantity: 2 }, signal)
    return `after the recovery, A → B and B → A delivered (${formatLatency(there)}, ${formatLatency(back)})`
  })

  await step(6, STEP_TIMEOUT_MS, async (signal) => {
    const a = instance('A')
    const b = instance('B')
    const id = 2001
    a.send({ type: 'publish-blob', id, bytes: BLOB_BYTES })
    const [published, received] = await Promise.all([
      a.next('published', signal, (report) => report.id === id, 'the 100 KB message'),
      b.next('received', signal, (report) => report.id === id, 'the 100 KB message'),
    ])
    const { bytes, notifies, sha256 } = published.report
    if (received.report.bytes !== bytes || received.report.sha256 !== sha256) {
      throw new Error(
        `the 100 KB message arrived altered: ${received.report.bytes} bytes, sha256 ${received.report.sha256} ` +
          `(sent ${bytes} bytes, sha256 ${sha256})`,
      )
    }
    narration.detail(
      `${OK} A → B  ${bytes.toLocaleString('en-US')} bytes, sent as ${notifies} NOTIFYs, received as one message  ` +
        dim(`delivered in ${formatLatency(received.report.latencyUs)}`),
      received.at,
    )
    narration.detail(`${OK} sha256 ${sha256.slice(0, 16)}… on both ends`, received.at)
    return `a ${Math.round(bytes / 1024)} KB message arrived intact (sha256 equal, ${notifies} NOTIFYs reassembled)`
  })
}

function summarize(failedAt: number | undefined): void {
  narration.step(7, 'Summary')
  STEPS.forEach((title, index) => {
    const outcome = outcomes[index]
    if (outcome === undefined) narration.note(`${SKIPPED} ${dim(`${title}: not reached`)}`)
    else if (outcome.status === 'held') narration.note(`${OK} ${outcome.text}`)
    else narration.note(`${FAILED} ${title}: ${red(outcome.text.split('\n')[0] ?? '')}`)
  })
  if (failedAt === undefined && latencies.length > 0) {
    const sorted = [...latencies].sort((x, y) => x - y)
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0
    narration.note(dim(`one-way latency of the ${sorted.length} orders: median ${formatLatency(median)}`))
  }
  if (heraldErrors > 0) narration.note(yellow(`${heraldErrors} 'error' event(s) emitted (shown above)`))
}

/** Closes both instances and the server; returns what did not go cleanly. */
async function shutdown(): Promise<string[]> {
  const problems: string[] = []
  narration.detail(bold('Shutdown'))
  await Promise.all(
    [...instances.values()].map(async (child) => {
      if (!child.running) {
        problems.push(`instance ${child.name} had already exited`)
        return
      }
      const controller = new AbortController()
      const timer = setTimeout(
        () => controller.abort(new Error(`timed out after ${SHUTDOWN_TIMEOUT_MS / 1000} s`)),
        SHUTDOWN_TIMEOUT_MS,
      )
      try {
        child.close()
        const { report } = await child.next('closed', controller.signal)
        const exit = await Promise.race([
          child.exited,
          new Promise<never>((_, reject) => {
            controller.signal.addEventListener(
              'abort',
              () => reject(new Error('the process did not exit after closing')),
              {
                once: true,
              },
            )
          }),
        ])
        if (exit.code !== 0) throw new Error(`closed, then ${describeExit(exit)}${child.stderrTail()}`)
        const { published, received, reconnects } = report.stats
        narration.detail(
          `${OK} ${child.name} closed its Herald and exited  ` +
            dim(`published ${published}, received ${received}, reconnects ${reconnects}`),
        )
      } catch (error) {
        problems.push(`instance ${child.name}: ${errorMessage(error)}`)
        narration.detail(`${FAILED} ${child.name}: ${red(errorMessage(error).split('\n')[0] ?? '')}`)
        child.kill()
      } finally {
        clearTimeout(timer)
        controller.abort()
      }
    }),
  )
  if (server !== undefined) {
    const embedded = server.embedded
    try {
      await server.close()
      narration.detail(`${OK} ${embedded ? 'PostgreSQL stopped' : 'demo connections to DATABASE_URL closed'}`)
    } catch (error) {
      problems.push(`closing PostgreSQL: ${errorMessage(error)}`)
      narration.detail(`${FAILED} ${red(`closing PostgreSQL: ${errorMessage(error)}`)}`)
    }
  }
  return problems
}

let interrupted = false
process.once('SIGINT', () => {
  interrupted = true
  process.stderr.write(`\n${red('Interrupted: stopping the instances and PostgreSQL')}\n`)
  for (const child of instances.values()) child.kill()
  void (server?.close() ?? Promise.resolve()).finally(() => process.exit(130))
})

narration.plain(bold('Herald demo: two app instances talk through PostgreSQL LISTEN/NOTIFY'))
narration.plain(
  dim(`channel "${CHANNEL}", run ${run}, every step times out after ${STEP_TIMEOUT_MS / 1000} s`),
)
narration.plain()

let failure: StepFailed | undefined
try {
  await script()
} catch (error) {
  if (!(error instanceof StepFailed)) throw error
  failure = error
}
if (!interrupted) {
  summarize(failure?.step)
  const problems = await shutdown()
  narration.plain()
  if (failure === undefined && problems.length === 0) {
    narration.plain(green(bold(`${OK} Every step held.`)))
    process.exitCode = 0
  } else {
    const reasons = [
      ...(failure === undefined
        ? []
        : [`step ${failure.step} (${STEPS[failure.step - 1]}): ${failure.message}`]),
      ...problems.map((problem) => `shutdown: ${problem}`),
    ]
    narration.plain(red(bold(`${FAILED} The demo failed.`)))
    process.stderr.write(`Herald demo failed:\n${reasons.map((reason) => `  - ${reason}`).join('\n')}\n`)
    process.exitCode = 1
  }
  // Everything is closed, so the process ends by itself; if something still holds it open,
  // that is a leak worth a line, not a hang.
  setTimeout(() => {
    process.stderr.write(
      `the demo was still running ${EXIT_GRACE_MS} ms after shutdown: a handle was left open\n`,
    )
    process.exit(process.exitCode === 0 ? 1 : process.exitCode)
  }, EXIT_GRACE_MS).unref()
}
