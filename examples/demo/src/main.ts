/**
 * The narrator: starts PostgreSQL (or uses DATABASE_URL), starts three app instances as child
 * processes, drives them through the script below over IPC, checks every step and says what
 * happened. Exit code 0 when every step held, 1 otherwise.
 *
 *   1. start PostgreSQL                       6. a bulk UPDATE from plain SQL evicts (trigger)
 *   2. start instances A, B and C             7. a lock: woken on release, and when its holder dies
 *   3. publish and subscribe (and 100 KB)     8. a config change seen by all three
 *   4. wrap a cache: a load, then a hit       9. a killed listener: nothing stale survives
 *   5. invalidate(key) on A evicts on B, C   10. summary, then a clean shutdown
 *
 * Every wait is on an event (an IPC report), never a sleep; each step has a timeout.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { installInvalidationTrigger, removeInvalidationTrigger } from '@herald/lru'
import { startPostgres, type PgServer } from '@herald/testing'
import type postgres from 'postgres'
import { describeExit, InstanceProcess, type Arrived } from './instance-process.js'
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
import {
  CHANNELS,
  ENV,
  INSTANCE_NAMES,
  LOCK_SWEEP_MS,
  preciseNow,
  runNames,
  userKey,
  type Command,
  type InstanceName,
  type Order,
  type ReadResult,
  type ReportOf,
  type ReportType,
  type User,
} from './protocol.js'

/** Every step but the first must hold within this. */
const STEP_TIMEOUT_MS = 10_000
/** The first run on a machine also runs initdb for the embedded server. */
const POSTGRES_TIMEOUT_MS = 60_000
/** Each instance must close and exit within this. */
const SHUTDOWN_TIMEOUT_MS = 10_000
/** Once everything is closed the process should end by itself; if a handle leaks, it is told so and exits. */
const EXIT_GRACE_MS = 2_000
const BLOB_BYTES = 100 * 1024
/**
 * A waiter must take a lock whose holder died within one sweep interval; this much more is
 * allowed for the sweep query, the advisory lock attempt and a busy machine's timers.
 */
const SWEEP_SLACK_MS = 500
/** Users in the demo's table. */
const USERS: readonly (readonly [number, string])[] = [
  [1, 'Ada'],
  [2, 'Grace'],
  [3, 'Edsger'],
  [4, 'Barbara'],
  [5, 'Ken'],
]
const ALL_KEYS = USERS.map(([id]) => userKey(id))
/** Timed invalidations after the first, narrated one. */
const INVALIDATION_ROUNDS = 20

/** The package directory: children resolve `--import tsx` from there, whatever our cwd. */
const DEMO_DIR = fileURLToPath(new URL('..', import.meta.url))
const INSTANCE_SCRIPT = join(import.meta.dirname, 'instance.ts')

const STEPS = [
  process.env['DATABASE_URL'] ? 'Connect to PostgreSQL (DATABASE_URL)' : 'Start PostgreSQL',
  'Start instances A, B and C',
  'Publish and subscribe',
  'Wrap a cache',
  'invalidate(key) on A evicts on B and C',
  'A bulk UPDATE from plain SQL evicts through the trigger',
  'A lock held on another instance',
  'A config change seen by all three',
  "Kill C's listener connection",
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
const names = runNames(run)
const outcomes: Outcome[] = []
const instances = new Map<InstanceName, InstanceProcess>()
/** Listener backend pid of each instance, as last reported. */
const listeners = new Map<InstanceName, number>()
/** One-way µs from `invalidate()` on A to the eviction on B or C, warm. */
const evictionLatencies: number[] = []
let server: PgServer | undefined
let tableCreated = false
let heraldErrors = 0
let nextReq = 1

function instance(name: InstanceName): InstanceProcess {
  const found = instances.get(name)
  if (found === undefined) throw new Error(`instance ${name} is not running`)
  return found
}

function pg(): PgServer {
  if (server === undefined) throw new Error('PostgreSQL is not running')
  return server
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

const others = (name: InstanceName): InstanceName[] => INSTANCE_NAMES.filter((other) => other !== name)
const µs = (fromMs: number, toMs: number): number => Math.round((toMs - fromMs) * 1000)
const list = (items: readonly string[]): string =>
  items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items.at(-1) ?? ''}`
function percentiles(samples: readonly number[]): { median: number; p90: number } {
  const sorted = [...samples].sort((x, y) => x - y)
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0
  return { median: at(0.5), p90: at(0.9) }
}
const describeUser = (user: User | null): string =>
  user === null ? 'no such user' : `${user.name} (visits ${user.visits})`

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
      // fallback for work that does not (starting the server, a query).
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

/** Sends a command carrying a fresh request id and waits for the report of `type` answering it. */
async function ask<TType extends ReportType>(
  name: InstanceName,
  type: TType,
  command: (req: number) => Command,
  signal: AbortSignal,
  label: string = type,
): Promise<Arrived<ReportOf<TType>>> {
  const req = nextReq++
  const child = instance(name)
  child.send(command(req))
  return child.next(type, signal, (report) => !('req' in report) || report.req === req, label)
}

/** `getOrLoad` of each key on `name`. */
async function read(
  name: InstanceName,
  keys: readonly string[],
  signal: AbortSignal,
): Promise<readonly ReadResult[]> {
  const { report } = await ask(
    name,
    'read',
    (req) => ({ type: 'read', req, keys }),
    signal,
    `reading ${list(keys)}`,
  )
  return report.results
}

/** Forgets the cache events reported so far, so a step waits for its own. */
function drainCacheEvents(): void {
  for (const child of instances.values()) {
    child.takeAll('evict')
    child.takeAll('flush')
  }
}

/** Waits for `name` to evict every one of `keys` for `reason`; resolves with the last eviction's time. */
async function evictions(
  name: InstanceName,
  keys: readonly string[],
  reason: string,
  signal: AbortSignal,
): Promise<number> {
  let last = 0
  for (const key of keys) {
    const { report } = await instance(name).next(
      'evict',
      signal,
      (evict) => evict.key === key && evict.reason === reason,
      `evict ${key} (${reason})`,
    )
    last = Math.max(last, report.at)
  }
  return last
}

async function rows(): Promise<Map<string, User>> {
  const sql = pg().sql
  const found = await sql<User[]>`select id, name, visits from ${sql(names.table)} order by id`
  return new Map(
    found.map((user) => [userKey(user.id), { id: user.id, name: user.name, visits: user.visits }]),
  )
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
    env: { ...process.env, [ENV.name]: name, [ENV.url]: url, [ENV.run]: run },
    now: () => narration.now(),
    onReport: ({ report, at }) => {
      // Background failures are not part of the script: show them as they come.
      if (report.type === 'error') {
        heraldErrors++
        narration.detail(
          yellow(`${name}'s ${report.source} emitted 'error' ${report.code}: ${report.message}`),
          at,
        )
      }
    },
  })
  instances.set(name, child)
  const ready = await child.next('ready', signal)
  child.takeAll('connected')
  const { backendPid, listenerApplicationName, channels } = ready.report
  // One listener connection per process, whatever uses it: counted on the server itself.
  const sql = pg().sql
  const [count] = await sql<{ n: number }[]>`
    select count(*)::int as n from pg_stat_activity where application_name = ${listenerApplicationName}`
  if (count?.n !== 1) {
    throw new Error(`${name} has ${count?.n ?? 0} listener connections (${listenerApplicationName}), not 1`)
  }
  if (channels !== CHANNELS.length) {
    throw new Error(`${name}'s listener carries ${channels} channels, not ${CHANNELS.length}`)
  }
  listeners.set(name, backendPid)
  narration.detail(
    `${OK} ${name} ready  ${dim(`one listener connection, backend pid ${backendPid}, carrying ${CHANNELS.join(', ')}`)}`,
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
    const sql = pg().sql
    await sql`create table ${sql(names.table)} (
      id int primary key, name text not null, visits int not null default 0)`
    tableCreated = true
    await sql`insert into ${sql(names.table)} ${sql(USERS.map(([id, name]) => ({ id, name })))}`
    narration.detail(`table ${names.table}: ${USERS.length} users`)
    const pids = await Promise.all(INSTANCE_NAMES.map((name) => startInstance(name, pg().url, signal)))
    return (
      `A, B and C each hold one listener connection (backend pids ${list(pids.map(String))}), ` +
      'shared by their cache, locks and config store'
    )
  })

  await step(3, STEP_TIMEOUT_MS, async (signal) => {
    const order: Order = { id: 1001, item: 'espresso', quantity: 2 }
    instance('A').send({ type: 'publish', id: order.id, order })
    const [published, ...received] = await Promise.all([
      instance('A').next('published', signal, (report) => report.id === order.id, `order #${order.id}`),
      ...others('A').map((name) =>
        instance(name).next('received', signal, (report) => report.id === order.id, `order #${order.id}`),
      ),
    ])
    const latencies: string[] = []
    received.forEach((arrived, index) => {
      const name = others('A')[index] as InstanceName
      if (arrived.report.sha256 !== published.report.sha256) {
        throw new Error(`order #${order.id} arrived altered on ${name}`)
      }
      latencies.push(formatLatency(arrived.report.latencyUs))
      narration.detail(
        `${OK} A → ${name}  order #${order.id}: ${order.quantity} × ${order.item}  ` +
          dim(`delivered in ${formatLatency(arrived.report.latencyUs)}`),
        arrived.at,
      )
    })
    const id = 2001
    instance('A').send({ type: 'publish-blob', id, bytes: BLOB_BYTES })
    const [blob, ...blobs] = await Promise.all([
      instance('A').next('published', signal, (report) => report.id === id, 'the 100 KB message'),
      ...others('A').map((name) =>
        instance(name).next('received', signal, (report) => report.id === id, 'the 100 KB message'),
      ),
    ])
    const { bytes, notifies, sha256 } = blob.report
    blobs.forEach((arrived, index) => {
      const name = others('A')[index] as InstanceName
      if (arrived.report.bytes !== bytes || arrived.report.sha256 !== sha256) {
        throw new Error(
          `the 100 KB message arrived altered on ${name}: ${arrived.report.bytes} bytes, sha256 ${arrived.report.sha256} ` +
            `(sent ${bytes} bytes, sha256 ${sha256})`,
        )
      }
      narration.detail(
        `${OK} A → ${name}  ${bytes.toLocaleString('en-US')} bytes, sent as ${notifies} NOTIFYs, received as one message  ` +
          dim(
            `delivered in ${formatLatency(arrived.report.latencyUs)}, sha256 ${sha256.slice(0, 12)}… on both ends`,
          ),
        arrived.at,
      )
    })
    return (
      `A → B and C delivered (${list(latencies)}); a ${Math.round(bytes / 1024)} KB message ` +
      `arrived intact in ${notifies} NOTIFYs`
    )
  })

  await step(4, STEP_TIMEOUT_MS, async (signal) => {
    const key = userKey(1)
    narration.detail(dim(`each instance: await users.getOrLoad('${key}', () => loadUser(1)), twice`))
    const hits: number[] = []
    for (const name of INSTANCE_NAMES) {
      const [first, second] = await read(name, [key, key], signal)
      if (first?.loaded !== true || first.value === null)
        throw new Error(`${name}: the first read was not a load`)
      if (second?.loaded !== false) throw new Error(`${name}: the second read was not a cache hit`)
      hits.push(second.us)
      narration.detail(
        `${OK} ${name}  ${key} → ${describeUser(first.value)}: loaded from PostgreSQL in ${formatLatency(first.us)}, ` +
          `then a cache hit in ${formatLatency(second.us)}`,
      )
    }
    return `each instance loaded ${key} once, then hit its cache (${list(hits.map(formatLatency))})`
  })

  await step(5, STEP_TIMEOUT_MS, async (signal) => {
    drainCacheEvents()
    const key = userKey(1)
    const name = 'Ada Lovelace'
    narration.detail(
      dim(`A: update users set name = '${name}' where id = 1; await users.invalidate('${key}')`),
    )
    const renamed = ask('A', 'renamed', (req) => ({ type: 'rename', req, id: 1, name }), signal)
    const evicted = others('A').map((other) => evictions(other, [key], 'invalidate', signal))
    const [{ report }, ...ats] = await Promise.all([renamed, ...evicted])
    ats.forEach((at, index) => {
      narration.detail(
        `${OK} ${others('A')[index]} evicted ${key} ${formatLatency(µs(report.sentAt, at))} after invalidate() on A`,
      )
    })
    for (const other of INSTANCE_NAMES) {
      const [result] = await read(other, [key], signal)
      if (result?.value?.name !== name || !result.loaded) {
        throw new Error(
          `${other} read ${describeUser(result?.value ?? null)} from ${result?.loaded ? 'PostgreSQL' : 'its cache'}`,
        )
      }
    }
    narration.detail(`${OK} A, B and C read ${key} → ${name}, loaded afresh`)
    // The first message paid one-time costs (statement preparation, cold code): time warm ones.
    for (let round = 0; round < INVALIDATION_ROUNDS; round++) {
      await Promise.all(others('A').map((other) => read(other, [key], signal)))
      const invalidated = ask('A', 'invalidated', (req) => ({ type: 'invalidate', req, key }), signal)
      const evictedAgain = others('A').map((other) => evictions(other, [key], 'invalidate', signal))
      const [{ report: sent }, ...times] = await Promise.all([invalidated, ...evictedAgain])
      for (const at of times) evictionLatencies.push(µs(sent.sentAt, at))
    }
    const { median, p90 } = percentiles(evictionLatencies)
    narration.detail(
      `${OK} ${INVALIDATION_ROUNDS} more rounds (B and C cache ${key}, A invalidates it): eviction on the other ` +
        `instance ${formatLatency(median)} after invalidate() at the median, ${formatLatency(p90)} at p90`,
    )
    return (
      `invalidate('${key}') on A evicted it on B and C: median ${formatLatency(median)} ` +
      `over ${evictionLatencies.length} evictions`
    )
  })

  await step(6, STEP_TIMEOUT_MS, async (signal) => {
    const sql = pg().sql
    const key = "'user:' || id"
    await installInvalidationTrigger(sql, { table: names.table, key, cache: names.cache })
    narration.detail(
      dim(
        `installInvalidationTrigger(sql, { table: '${names.table}', key: "${key}", cache: '${names.cache}' })`,
      ),
    )
    for (const name of INSTANCE_NAMES) await read(name, ALL_KEYS, signal)
    narration.detail(`A, B and C cache ${ALL_KEYS[0]} … ${ALL_KEYS.at(-1)}`)
    drainCacheEvents()
    // A client that knows nothing of Herald, as psql or another service would be.
    const plain = pg().connect({ max: 1, connection: { application_name: `herald-demo-psql-${run}` } })
    let sentAt: number
    let updated: number
    try {
      await plain`select 1`
      narration.detail(dim(`another client: update ${names.table} set visits = visits + 1`))
      sentAt = preciseNow()
      const result = await plain`update ${plain(names.table)} set visits = visits + 1`
      updated = result.count
    } finally {
      await plain.end({ timeout: 1 })
    }
    if (updated !== USERS.length) throw new Error(`the UPDATE touched ${updated} rows, not ${USERS.length}`)
    const lasts = await Promise.all(
      INSTANCE_NAMES.map((name) => evictions(name, ALL_KEYS, 'invalidate', signal)),
    )
    const latencies = lasts.map((at) => µs(sentAt, at))
    latencies.forEach((latency, index) => {
      narration.detail(
        `${OK} ${INSTANCE_NAMES[index]} evicted all ${ALL_KEYS.length} keys ${formatLatency(latency)} after the UPDATE was sent`,
      )
    })
    const truth = await rows()
    for (const name of INSTANCE_NAMES) {
      for (const result of await read(name, ALL_KEYS, signal)) {
        const expected = truth.get(result.key)
        if (!result.loaded || result.value?.visits !== expected?.visits) {
          throw new Error(
            `${name} read ${result.key} → ${describeUser(result.value)}, expected ${describeUser(expected ?? null)}`,
          )
        }
      }
    }
    narration.detail(`${OK} A, B and C reload every user with the new visit count`)
    return (
      `one UPDATE of ${updated} rows from a plain client evicted ${updated} keys on A, B and C ` +
      `(${list(latencies.map(formatLatency))})`
    )
  })

  await step(7, STEP_TIMEOUT_MS, async (signal) => {
    const lockName = names.lock
    const a = instance('A')
    const b = instance('B')
    const acquired = (who: InstanceProcess) =>
      who.next('lock-acquired', signal, (report) => report.name === lockName, `acquiring ${lockName}`)
    /** Until B's tryAcquire failed and its acquire() is parked (a sweep found the lock held). */
    const parked = async (who: InstanceProcess) => {
      await who.next('lock-busy', signal, (report) => report.name === lockName, `${lockName} busy`)
      await who.next('lock-waiting', signal, (report) => report.name === lockName, `parked on ${lockName}`)
    }
    const tokens: bigint[] = []

    // Round 1: a normal release wakes the waiter through a NOTIFY.
    a.send({ type: 'lock', name: lockName })
    tokens.push(BigInt((await acquired(a)).report.token))
    narration.detail(`${OK} A holds ${lockName}  ${dim(`fencing token ${tokens[0]}`)}`)
    b.send({ type: 'lock', name: lockName })
    await parked(b)
    narration.detail(
      `B: tryAcquire → held elsewhere; acquire() waits ${dim('(no polling loop, no connection of its own)')}`,
    )
    a.send({ type: 'unlock', name: lockName })
    const released = await a.next('lock-released', signal, undefined, `releasing ${lockName}`)
    const woken = await acquired(b)
    tokens.push(BigInt(woken.report.token))
    const wakeUs = µs(released.report.sentAt, woken.report.at)
    narration.detail(
      `${OK} A released; B woken and holding it ${formatLatency(wakeUs)} after release()  ${dim(`token ${woken.report.token}`)}`,
      woken.at,
    )
    b.send({ type: 'unlock', name: lockName })
    await b.next('lock-released', signal, undefined, `releasing ${lockName}`)

    // Round 2: the holder's lock session dies; nobody sends a release, the sweep finds it free.
    a.send({ type: 'lock', name: lockName })
    tokens.push(BigInt((await acquired(a)).report.token))
    narration.detail(`${OK} A holds ${lockName} again  ${dim(`token ${tokens[2]}`)}`)
    b.send({ type: 'lock', name: lockName })
    await parked(b)
    narration.detail('B waits again')
    const session = `${names.applicationName('A')}-locks`
    const sql = pg().sql
    const killedAt = preciseNow()
    // Only A's lock session: on a shared server (DATABASE_URL) nothing else may be touched.
    const killed = await sql<{ pid: number; terminated: boolean }[]>`
      with target as materialized (
        select pid from pg_stat_activity where application_name = ${session} and backend_type = 'client backend'
      )
      select pid, pg_terminate_backend(pid) as terminated from target`
    if (killed.length !== 1 || killed[0]?.terminated !== true) {
      throw new Error(`expected to terminate one lock session ${session}, terminated ${killed.length}`)
    }
    narration.detail(`pg_terminate_backend(${killed[0].pid})  ${dim(`A's lock session, ${session}`)}`)
    const [lost, taken] = await Promise.all([
      a.next('lock-lost', signal, (report) => report.name === lockName, `losing ${lockName}`),
      acquired(b),
    ])
    narration.detail(
      `A lost it: lock.signal aborted with ${lost.report.code} ${formatMs(lost.report.at - killedAt)} later`,
      lost.at,
    )
    tokens.push(BigInt(taken.report.token))
    // Counted from when A saw its session close, the backend gone: a sweep that ran a moment
    // before that still found the lock held, and the next one is a full interval later.
    const sweptMs = taken.report.at - lost.report.at
    if (sweptMs > LOCK_SWEEP_MS + SWEEP_SLACK_MS) {
      throw new Error(
        `B took the lock ${formatMs(sweptMs)} after the holder died: more than the ${LOCK_SWEEP_MS} ms sweep`,
      )
    }
    narration.detail(
      `${OK} B holds it ${formatMs(sweptMs)} after A's session died  ` +
        dim(`no release was sent: found by the ${LOCK_SWEEP_MS / 1000} s sweep, token ${taken.report.token}`),
      taken.at,
    )
    b.send({ type: 'unlock', name: lockName })
    await b.next('lock-released', signal, undefined, `releasing ${lockName}`)
    if (!tokens.every((token, index) => index === 0 || token > (tokens[index - 1] as bigint))) {
      throw new Error(`fencing tokens are not strictly increasing: ${tokens.join(', ')}`)
    }
    narration.detail(`${OK} fencing tokens strictly increasing: ${tokens.join(' < ')}`)
    return (
      `B waited for A's lock: woken ${formatLatency(wakeUs)} after release(), ` +
      `and ${formatMs(sweptMs)} after A's lock session died`
    )
  })

  await step(8, STEP_TIMEOUT_MS, async (signal) => {
    const values = (name: InstanceName) =>
      ask(name, 'config-values', (req) => ({ type: 'config-get', req }), signal, 'config values')
    const before = await values('A')
    const previous = before.report.values['rateLimit']
    narration.detail(
      dim(`schema: { rateLimit: z.number().int().positive().default(100), banner: z.string().optional() }`),
    )
    const change = (name: InstanceName) =>
      instance(name).next(
        'config-change',
        signal,
        (report) => report.key === 'rateLimit' && report.value === 250,
        'rateLimit change',
      )
    const changes = INSTANCE_NAMES.map(change)
    const set = await ask(
      'A',
      'config-set',
      (req) => ({ type: 'config-set', req, key: 'rateLimit', value: 250 }),
      signal,
    )
    narration.detail(`A: await config.set('rateLimit', 250)  ${dim(`→ version ${set.report.version}`)}`)
    const seen = await Promise.all(changes)
    const latencies: string[] = []
    seen.forEach(({ report, at }, index) => {
      const name = INSTANCE_NAMES[index] as InstanceName
      if (report.version !== set.report.version) {
        throw new Error(
          `${name} applied rateLimit 250 as version ${report.version}, not ${set.report.version}`,
        )
      }
      const latency = formatLatency(µs(set.report.sentAt, report.at))
      if (name !== 'A') latencies.push(latency)
      narration.detail(
        `${OK} ${name} change: rateLimit ${String(report.previous)} → ${String(report.value)}, version ${report.version}  ${dim(`${latency} after set()`)}`,
        at,
      )
    })
    const refused = await ask(
      'A',
      'config-refused',
      (req) => ({ type: 'config-set', req, key: 'rateLimit', value: -5 }),
      signal,
    )
    if (refused.report.code !== 'VALUE_INVALID') {
      throw new Error(`config.set('rateLimit', -5) failed with ${refused.report.code}, not VALUE_INVALID`)
    }
    narration.detail(`${OK} A: config.set('rateLimit', -5) refused: VALUE_INVALID, nothing written`)
    for (const name of INSTANCE_NAMES) {
      const { report } = await values(name)
      if (report.values['rateLimit'] !== 250 || report.version !== set.report.version) {
        throw new Error(
          `${name} has rateLimit ${String(report.values['rateLimit'])} at version ${report.version}`,
        )
      }
    }
    narration.detail(`${OK} A, B and C: config.get('rateLimit') → 250, version ${set.report.version}`)
    return `rateLimit ${String(previous)} → 250 seen by A, B and C (B and C in ${list(latencies)}); an invalid value refused`
  })

  await step(9, STEP_TIMEOUT_MS, async (signal) => {
    const c = instance('C')
    for (const name of INSTANCE_NAMES) await read(name, ALL_KEYS, signal)
    narration.detail(`A, B and C cache ${ALL_KEYS[0]} … ${ALL_KEYS.at(-1)}`)
    drainCacheEvents()
    const backendPid = listeners.get('C') ?? 0
    const applicationName = `${names.applicationName('C')}-listener`
    const newName = 'Ada, Countess of Lovelace'
    const sql = pg().sql
    // A client that knows nothing of Herald, connected beforehand so that its UPDATE goes out
    // the moment C is down.
    const plain = pg().connect({ max: 1, connection: { application_name: `herald-demo-psql-${run}` } })
    let committedAt: number
    try {
      await plain`select 1`
      narration.detail(
        `pg_terminate_backend(${backendPid})  ${dim(`C's listener session, ${applicationName}`)}`,
      )
      const killedAt = narration.now()
      // Only that pid, and only while it still is C's listener: on a shared server
      // (DATABASE_URL) nothing else may be touched.
      let terminated: { terminated: boolean }[]
      try {
        terminated = await sql<{ terminated: boolean }[]>`
          with target as materialized (
            select pid from pg_stat_activity where pid = ${backendPid} and application_name = ${applicationName}
          )
          select pg_terminate_backend(pid) as terminated from target`
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
      const lost = await c.next('disconnected', signal)
      narration.detail(
        `C ${cyan('disconnected')} ${formatMs(lost.at - killedAt)} later: ${lost.report.message} ${dim(`(${lost.report.code})`)}`,
        lost.at,
      )
      narration.detail(`while C is away, another client: update … set name = '${newName}' where id = 1`)
      await plain`update ${plain(names.table)} set name = ${newName} where id = 1`
      committedAt = preciseNow()
    } finally {
      await plain.end({ timeout: 1 })
    }
    await Promise.all(others('C').map((name) => evictions(name, [userKey(1)], 'invalidate', signal)))
    narration.detail(`${OK} A and B evicted ${userKey(1)} through the trigger`)
    const back = await c.next('reconnected', signal)
    for (const { report, at } of c.takeAll('reconnecting')) {
      narration.detail(
        `C ${cyan('reconnecting')}: attempt ${report.attempt} in ${formatMs(report.delayMs)}`,
        at,
      )
    }
    c.takeAll('connected')
    const { downtimeMs, backendPid: newPid } = back.report
    if (newPid === backendPid) throw new Error(`C reconnected on the same backend pid ${newPid}`)
    listeners.set('C', newPid)
    narration.detail(
      `${OK} C ${cyan('reconnected')}: downtimeMs ${Math.round(downtimeMs)}, new listener backend pid ${newPid}`,
      back.at,
    )
    // Whether C could have heard the UPDATE's NOTIFY: only if it was listening again when
    // the UPDATE committed. Either way it must not keep the old name.
    const missed = back.report.at > committedAt
    narration.detail(
      dim(
        missed
          ? `the UPDATE committed ${formatMs(back.report.at - committedAt)} before C listened again: its notification never reached C`
          : 'C was listening again before the UPDATE committed',
      ),
    )
    const flush = await c.next('flush', signal, (report) => report.reason === 'gap', 'flush after the gap')
    const gapEvicted = c.takeAll('evict').filter(({ report }) => report.reason === 'gap').length
    narration.detail(
      `${OK} C flushed its cache (reason 'gap'): ${gapEvicted} entries it can no longer vouch for`,
      flush.at,
    )
    const [result] = await read('C', [userKey(1)], signal)
    if (result?.value?.name !== newName || !result.loaded) {
      throw new Error(
        `C read ${userKey(1)} → ${describeUser(result?.value ?? null)} from ${result?.loaded ? 'PostgreSQL' : 'its cache'}`,
      )
    }
    narration.detail(`${OK} C reads ${userKey(1)} → ${newName}, loaded from PostgreSQL`)
    // Nothing stale anywhere: every entry every instance caches equals its row.
    for (const name of INSTANCE_NAMES) await read(name, ALL_KEYS, signal)
    const truth = await rows()
    const counts: string[] = []
    for (const name of INSTANCE_NAMES) {
      const { report } = await ask(name, 'dump', (req) => ({ type: 'dump', req }), signal, 'cache entries')
      if (!report.live) throw new Error(`${name}'s cache is not live after the recovery`)
      for (const [key, value] of report.entries) {
        const row = truth.get(key)
        if (row === undefined || row.name !== value.name || row.visits !== value.visits) {
          throw new Error(
            `${name} caches a stale ${key}: ${describeUser(value)}, the table has ${describeUser(row ?? null)}`,
          )
        }
      }
      counts.push(`${name} ${report.entries.length}`)
    }
    narration.detail(
      `${OK} no stale entry: every cached user equals its row  ${dim(`(entries: ${counts.join(', ')})`)}`,
    )
    return (
      `C's listener was killed${missed ? ` while ${userKey(1)} changed` : ''}; C reconnected after ${formatMs(downtimeMs)}, ` +
      `flushed, and reloaded the current value: no stale entry on A, B or C`
    )
  })
}

function summarize(): void {
  narration.step(STEPS.length + 1, 'Summary')
  STEPS.forEach((title, index) => {
    const outcome = outcomes[index]
    if (outcome === undefined) narration.note(`${SKIPPED} ${dim(`${title}: not reached`)}`)
    else if (outcome.status === 'held') narration.note(`${OK} ${outcome.text}`)
    else narration.note(`${FAILED} ${title}: ${red(outcome.text.split('\n')[0] ?? '')}`)
  })
  if (heraldErrors > 0) narration.note(yellow(`${heraldErrors} 'error' event(s) emitted (shown above)`))
}

/** Removes what the run created on a shared server; an embedded one is deleted whole. */
async function cleanUp(sql: postgres.Sql): Promise<void> {
  if (!tableCreated) return
  await removeInvalidationTrigger(sql, { table: names.table, cache: names.cache })
  await sql`drop table if exists ${sql(names.table)}`
  // The config and lock tables are shared with everyone else: only this run's rows.
  for (const statement of [
    sql`delete from herald.config_history where namespace = ${names.namespace}`,
    sql`delete from herald.config_values where namespace = ${names.namespace}`,
    sql`delete from herald.config_heads where namespace = ${names.namespace}`,
    sql`delete from herald.lock_tokens where name = ${names.lock}`,
  ]) {
    try {
      await statement
    } catch (error) {
      // A run that failed early never created them.
      if ((error as { code?: string }).code !== '42P01') throw error
    }
  }
}

/** Closes the instances and the server; returns what did not go cleanly. */
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
              { once: true },
            )
          }),
        ])
        if (exit.code !== 0) throw new Error(`closed, then ${describeExit(exit)}${child.stderrTail()}`)
        const { published, received, reconnects, hits, loads } = report.stats
        narration.detail(
          `${OK} ${child.name} closed and exited  ` +
            dim(
              `published ${published}, received ${received}, reconnects ${reconnects}, cache hits ${hits}, loads ${loads}`,
            ),
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
    if (!embedded) {
      try {
        await cleanUp(server.sql)
        narration.detail(`${OK} removed the run's table, trigger, config namespace and lock token`)
      } catch (error) {
        problems.push(`cleaning up: ${errorMessage(error)}`)
        narration.detail(`${FAILED} ${red(`cleaning up: ${errorMessage(error)}`)}`)
      }
    }
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

narration.plain(bold('Herald demo: three app instances, one PostgreSQL, nothing else'))
narration.plain(dim(`run ${run}, every step times out after ${STEP_TIMEOUT_MS / 1000} s`))
narration.plain()

let failure: StepFailed | undefined
try {
  await script()
} catch (error) {
  if (!(error instanceof StepFailed)) throw error
  failure = error
}
if (!interrupted) {
  summarize()
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
