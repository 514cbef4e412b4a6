/**
 * One app instance, as an application would wire Herald: one `Herald` (so one listener
 * connection) shared by an `InvalidatingCache` of users, `Locks` and a `ConfigStore`, plus a
 * subscription of its own on the orders channel. It acts when the narrator asks and reports
 * every event back over IPC. Started by main.ts; not meant to be run by hand.
 */
import { randomBytes } from 'node:crypto'
import { ConfigStore } from '@herald/config'
import { Herald, HeraldError } from '@herald/core'
import { Locks, type Lock } from '@herald/lock'
import { InvalidatingCache } from '@herald/lru'
import postgres from 'postgres'
import {
  CONFIG_SCHEMA,
  contentHash,
  ENV,
  isWireMessage,
  LOCK_SWEEP_MS,
  ORDERS_CHANNEL,
  preciseNow,
  runNames,
  type Command,
  type InstanceName,
  type ReadResult,
  type Report,
  type User,
  type WireMessage,
} from './protocol.js'

/** How long close() waits for running handlers; ours are synchronous, so this is only a cap. */
const CLOSE_TIMEOUT_MS = 2_000
/** How often the demo looks at `locks.stats().sweeps` while an `acquire` waits. */
const PARKED_CHECK_MS = 10
/** An `acquire` the narrator asked for gives up after this (each step times out sooner). */
const ACQUIRE_TIMEOUT_MS = 30_000

function send(report: Report, then?: () => void): void {
  if (process.send === undefined || !process.connected) return
  process.send(report, undefined, undefined, () => then?.())
}

function required(name: string): string {
  const value = process.env[name]
  if (!value) throw new Error(`instance.ts: ${name} is not set; main.ts starts this script`)
  return value
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

if (process.send === undefined) {
  process.stderr.write('instance.ts is started by main.ts (it needs an IPC channel): run `pnpm demo`\n')
  process.exit(2)
}

const name = required(ENV.name) as InstanceName
const run = required(ENV.run)
const url = required(ENV.url)
const names = runNames(run)
const applicationName = names.applicationName(name)

// The app's own client: Herald publishes through it, the cache loads and the config store
// reads with it. Like any app's pool it is warm before traffic arrives.
const sql = postgres(url, {
  max: 4,
  onnotice: () => {},
  connection: { application_name: `${applicationName}-app` },
})
const herald = new Herald({ connection: url, sql, applicationName, closeTimeoutMs: CLOSE_TIMEOUT_MS })
// Every component takes the one Herald: however many there are, the process holds one
// listener connection.
const users = new InvalidatingCache<User>({ herald, name: names.cache, max: 1_000 })
const locks = new Locks({ herald, applicationName, sweepMs: LOCK_SWEEP_MS })
const config = new ConfigStore({ herald, schema: CONFIG_SCHEMA, namespace: names.namespace })
const held = new Map<string, Lock>()
let evicted = 0

herald.on('connected', ({ backendPid, reconnect }) => send({ type: 'connected', backendPid, reconnect }))
herald.on('disconnected', ({ error }) =>
  send({ type: 'disconnected', code: error.code, message: error.message }),
)
herald.on('reconnecting', ({ attempt, delayMs }) => send({ type: 'reconnecting', attempt, delayMs }))
herald.on('reconnected', ({ downtimeMs, backendPid }) =>
  send({ type: 'reconnected', downtimeMs, backendPid, at: preciseNow() }),
)
function reportError(source: string): (error: HeraldError) => void {
  return (error) => send({ type: 'error', source, code: error.code, message: error.message })
}
herald.on('error', reportError('herald'))
users.on('error', reportError('cache'))
locks.on('error', reportError('locks'))
config.on('error', reportError('config'))
users.on('evict', ({ key, reason }) => {
  evicted++
  send({ type: 'evict', key, reason, at: preciseNow() })
})
users.on('flush', ({ reason }) => send({ type: 'flush', reason, at: preciseNow() }))
locks.on('lost', ({ name: lockName, token, error }) => {
  send({ type: 'lock-lost', name: lockName, token: String(token), code: error.code, at: preciseNow() })
  // The lock is gone on the server; releasing it frees its slot in this process.
  const lock = held.get(lockName)
  held.delete(lockName)
  void lock?.release().catch(() => {})
})
config.on('change', ({ key, value, previous, version }) =>
  send({ type: 'config-change', key, value, previous, version, at: preciseNow() }),
)

async function loadUser(key: string): Promise<User | null> {
  const id = Number(key.slice('user:'.length))
  const [row] = await sql<User[]>`select id, name, visits from ${sql(names.table)} where id = ${id}`
  return row ?? null
}

async function read(keys: readonly string[]): Promise<ReadResult[]> {
  const results: ReadResult[] = []
  for (const key of keys) {
    let loaded = false
    const started = performance.now()
    // A missing row (null) is returned, not cached; the cache's value type excludes it.
    const value = await users.getOrLoad(key, async () => {
      loaded = true
      return (await loadUser(key)) as User
    })
    const us = Math.round((performance.now() - started) * 1000)
    results.push({ key, value: value ?? null, loaded, us })
  }
  return results
}

async function publish(id: number, content: Pick<WireMessage, 'order' | 'blob'>): Promise<void> {
  const wire: WireMessage = { run, id, from: name, sentAt: preciseNow(), ...content }
  const before = herald.stats().notifies
  await herald.publish(ORDERS_CHANNEL, wire)
  send({
    type: 'published',
    id,
    bytes: Buffer.byteLength(JSON.stringify(wire)),
    sha256: contentHash(wire),
    notifies: herald.stats().notifies - before,
  })
}

async function lock(lockName: string): Promise<void> {
  let acquired = await locks.tryAcquire(lockName)
  if (acquired === undefined) {
    send({ type: 'lock-busy', name: lockName })
    // No polling: woken by the holder's release message, or by the sweep if the holder died.
    const waiting = locks.acquire(lockName, { timeoutMs: ACQUIRE_TIMEOUT_MS })
    reportWhenParked(lockName, waiting)
    acquired = await waiting
  }
  const at = preciseNow()
  held.set(lockName, acquired)
  send({ type: 'lock-acquired', name: lockName, token: String(acquired.token), at })
}

/**
 * Tells the narrator once `acquire` is certainly parked: a sweep (one `pg_locks` query for
 * every awaited lock, each `sweepMs`) has run and found the lock still held while the call is
 * pending. Only then is a wake-up the release's or the next sweep's doing, not a first try
 * that happened to come after the holder let go. `Locks` has no event for this; the demo
 * watches its counter.
 */
function reportWhenParked(lockName: string, waiting: Promise<unknown>): void {
  const sweeps = locks.stats().sweeps
  let settled = false
  void waiting.then(
    () => (settled = true),
    () => (settled = true),
  )
  const check = (): void => {
    if (settled) return
    if (locks.stats().sweeps > sweeps) send({ type: 'lock-waiting', name: lockName })
    else setTimeout(check, PARKED_CHECK_MS).unref()
  }
  check()
}

async function unlock(lockName: string): Promise<void> {
  const lock = held.get(lockName)
  if (lock === undefined) throw new Error(`${name} does not hold ${lockName}`)
  held.delete(lockName)
  const sentAt = preciseNow()
  await lock.release()
  send({ type: 'lock-released', name: lockName, sentAt })
}

async function handle(command: Command): Promise<void> {
  switch (command.type) {
    case 'publish':
      return publish(command.id, { order: command.order })
    case 'publish-blob':
      // base64 of random bytes: 3 bytes become 4 characters, all ASCII.
      return publish(command.id, {
        blob: randomBytes(Math.ceil((command.bytes * 3) / 4))
          .toString('base64')
          .slice(0, command.bytes),
      })
    case 'read':
      return send({ type: 'read', req: command.req, results: await read(command.keys) })
    case 'rename': {
      await sql`update ${sql(names.table)} set name = ${command.name} where id = ${command.id}`
      const sentAt = preciseNow()
      await users.invalidate(`user:${command.id}`)
      return send({ type: 'renamed', req: command.req, sentAt })
    }
    case 'invalidate': {
      const sentAt = preciseNow()
      await users.invalidate(command.key)
      return send({ type: 'invalidated', req: command.req, sentAt })
    }
    case 'lock':
      return lock(command.name)
    case 'unlock':
      return unlock(command.name)
    case 'config-set': {
      const sentAt = preciseNow()
      try {
        // The narrator sends the value as JSON; the schema is what checks it.
        const version = await config.set(command.key, command.value as never)
        return send({ type: 'config-set', req: command.req, version, sentAt })
      } catch (error) {
        if (!(error instanceof HeraldError)) throw error
        return send({ type: 'config-refused', req: command.req, code: error.code, message: error.message })
      }
    }
    case 'config-get':
      return send({ type: 'config-values', req: command.req, values: config.all(), version: config.version })
    case 'dump':
      return send({ type: 'dump', req: command.req, entries: users.entries(), live: users.stats().live })
    case 'close':
      return close()
  }
}

let closing: Promise<void> | undefined

/** Closes everything and lets the process end on its own: a leaked handle would show as a hang. */
function close(): Promise<void> {
  closing ??= (async () => {
    const { published, received, reconnects } = herald.stats()
    const { hits, loads } = users.stats()
    await Promise.allSettled([users.close(), locks.close(), config.close()])
    await herald.close()
    // Herald never ends a client it was given.
    await sql.end({ timeout: 1 })
    send({ type: 'closed', stats: { published, received, reconnects, hits, loads, evicted } }, () => {
      if (process.connected) process.disconnect()
    })
  })()
  return closing
}

function fail(error: unknown): void {
  send({ type: 'failed', message: message(error) }, () => process.exit(1))
}

process.on('message', (command: Command) => {
  handle(command).catch(fail)
})
// The narrator went away (crash, Ctrl-C): do not outlive it.
process.on('disconnect', () => {
  void close()
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    void close().finally(() => process.exit(130))
  })
}

try {
  await Promise.all([herald.start(), sql`select 1`])
  await herald.subscribe<unknown>(ORDERS_CHANNEL, (payload, meta) => {
    const receivedAt = preciseNow()
    // Our own messages come back too (meta.self); a foreign run shares the server's channel.
    if (meta.self || !isWireMessage(payload) || payload.run !== run) return
    send({
      type: 'received',
      id: payload.id,
      from: payload.from,
      latencyUs: Math.round((receivedAt - payload.sentAt) * 1000),
      bytes: Buffer.byteLength(JSON.stringify(payload)),
      sha256: contentHash(payload),
      ...(payload.order === undefined ? {} : { order: payload.order }),
    })
  })
  // The cache subscribes by itself, the config store on start(); Locks on first use, which a
  // wait for a free lock is: from here on the one listener carries every channel.
  await Promise.all([users.ready(), config.start(), locks.waitForRelease(names.lock, { timeoutMs: 10_000 })])
  const { backendPid } = herald.stats()
  if (backendPid === undefined) throw new Error('started, but the listener has no backend pid')
  send({
    type: 'ready',
    backendPid,
    listenerApplicationName: `${applicationName}-listener`,
    channels: herald.stats().channels,
  })
} catch (error) {
  await Promise.allSettled([users.close(), locks.close(), config.close()])
  await herald.close()
  await sql.end({ timeout: 1 })
  fail(error)
}
