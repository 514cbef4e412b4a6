/**
 * One app instance: its own Herald (so its own listener connection), subscribed to the
 * demo's channel. It publishes when the narrator asks and reports every message and
 * connection event back over IPC. Started by main.ts; not meant to be run by hand.
 */
import { randomBytes } from 'node:crypto'
import { Herald } from '@herald/core'
import postgres from 'postgres'
import {
  contentHash,
  ENV,
  isWireMessage,
  preciseNow,
  type Command,
  type InstanceName,
  type Report,
  type WireMessage,
} from './protocol.js'

/** How long close() waits for running handlers; ours are synchronous, so this is only a cap. */
const CLOSE_TIMEOUT_MS = 2_000

function send(report: Report, then?: () => void): void {
  if (process.send === undefined || !process.connected) return
  process.send(report, undefined, undefined, () => then?.())
}

function required(name: string): string {
  const value = process.env[name]
  if (!value) throw new Error(`instance.ts: ${name} is not set; main.ts starts this script`)
  return value
}

if (process.send === undefined) {
  process.stderr.write('instance.ts is started by main.ts (it needs an IPC channel): run `pnpm demo`\n')
  process.exit(2)
}

const name = required(ENV.name) as InstanceName
const channel = required(ENV.channel)
const run = required(ENV.run)
const applicationName = `herald-demo-${name.toLowerCase()}-${run}`

const url = required(ENV.url)
// The app's own client, which Herald publishes through (it opens the listener itself). Like
// any app's pool it is warm before traffic arrives, so latencies are not first-connect times.
const sql = postgres(url, {
  max: 2,
  onnotice: () => {},
  connection: { application_name: `${applicationName}-app` },
})
const herald = new Herald({ connection: url, sql, applicationName, closeTimeoutMs: CLOSE_TIMEOUT_MS })
herald.on('connected', ({ backendPid, reconnect }) => send({ type: 'connected', backendPid, reconnect }))
herald.on('disconnected', ({ error }) =>
  send({ type: 'disconnected', code: error.code, message: error.message }),
)
herald.on('reconnecting', ({ attempt, delayMs }) => send({ type: 'reconnecting', attempt, delayMs }))
herald.on('reconnected', ({ downtimeMs, backendPid }) =>
  send({ type: 'reconnected', downtimeMs, backendPid }),
)
herald.on('error', (error) => send({ type: 'error', code: error.code, message: error.message }))

let closing: Promise<void> | undefined

/** Closes the Herald and lets the process end on its own: a leaked handle would show as a hang. */
function close(): Promise<void> {
  closing ??= (async () => {
    const { published, received, notifies, reconnects, downtimeMs } = herald.stats()
    await herald.close()
    // Herald never ends a client it was given.
    await sql.end({ timeout: 1 })
    send({ type: 'closed', stats: { published, received, notifies, reconnects, downtimeMs } }, () => {
      if (process.connected) process.disconnect()
    })
  })()
  return closing
}

async function publish(id: number, content: Pick<WireMessage, 'order' | 'blob'>): Promise<void> {
  const message: WireMessage = { run, id, from: name, sentAt: preciseNow(), ...content }
  const before = herald.stats().notifies
  await herald.publish(channel, message)
  send({
    type: 'published',
    id,
    bytes: Buffer.byteLength(JSON.stringify(message)),
    sha256: contentHash(message),
    notifies: herald.stats().notifies - before,
  })
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
    case 'close':
      return close()
  }
}

function fail(error: unknown): void {
  const message = error instanceof Error ? error.message : String(error)
  send({ type: 'failed', message }, () => process.exit(1))
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
  await herald.subscribe<unknown>(channel, (payload, meta) => {
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
  const { backendPid } = herald.stats()
  if (backendPid === undefined) throw new Error('started, but the listener has no backend pid')
  send({ type: 'ready', backendPid, listenerApplicationName: `${applicationName}-listener` })
} catch (error) {
  await herald.close()
  await sql.end({ timeout: 1 })
  fail(error)
}
