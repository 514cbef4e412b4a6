/**
 * One of the "other instances" of `lru-invalidation-throughput.ts`: a Herald with an
 * InvalidatingCache on the shared channel, and a raw postgres.js `sql.listen` receiver with a
 * Map, each filled with a round's keys on request; it reports when every key has left.
 */
import { Herald } from '@herald/core'
import { InvalidatingCache } from '@herald/lru'
import postgres from 'postgres'
import { makeUser, type User } from './lib/users.js'
import { roundKey, type FromReceiver, type ToReceiver } from './lru-invalidation-messages.js'
import { failureReporter, sendToParent } from './lib/parent-channel.js'

let herald: Herald | undefined
let cache: InvalidatingCache<User> | undefined
let sql: postgres.Sql | undefined
let closing: Promise<void> | undefined
const raw = new Map<string, User>()
let rawNotifications = 0
/** The round being evicted and how many of its keys are still cached. */
let round = -1
let remaining = 0

function send(message: FromReceiver, then?: () => void): void {
  sendToParent(message, then)
}

const fail = failureReporter(() => shutdown())

function shutdown(): Promise<void> {
  closing ??= (async () => {
    await cache?.close()
    await Promise.all([herald?.close(), sql?.end({ timeout: 1 })])
  })()
  return closing
}

function evicted(): void {
  if (--remaining === 0) send({ type: 'evicted', round })
}

async function start(message: Extract<ToReceiver, { type: 'start' }>): Promise<void> {
  herald = new Herald({ connection: message.url, applicationName: 'bench-invalidation-receiver' })
  // A background error (lost listener, invalid message) would make the figures lie.
  herald.on('error', fail)
  await herald.start()
  cache = new InvalidatingCache<User>({ herald, name: 'users', channel: message.channel, max: message.max })
  cache.on('error', fail)
  // The app-facing way to learn a key left; it costs the same for every Herald mode.
  cache.on('evict', ({ reason }) => {
    if (reason === 'invalidate') evicted()
  })
  await cache.ready()
  sql = postgres(message.url, {
    onnotice: () => {},
    connection: { application_name: 'bench-invalidation-receiver-raw' },
  })
  await sql.listen(message.rawChannel, (key) => {
    rawNotifications++
    if (raw.delete(key)) evicted()
  })
  send({ type: 'ready' })
}

function fill(message: Extract<ToReceiver, { type: 'fill' }>): void {
  if (remaining !== 0)
    throw new Error(`round ${round} still had ${remaining} keys when ${message.round} began`)
  round = message.round
  remaining = message.keys
  for (let id = 0; id < message.keys; id++) {
    const key = roundKey(message.round, id)
    if (message.mode === 'raw') raw.set(key, makeUser(id))
    else if (!cache?.set(key, makeUser(id))) throw new Error('the cache refused a set: not live')
  }
  send({ type: 'filled', round: message.round })
}

process.on('message', (message: ToReceiver) => {
  try {
    if (message.type === 'start') start(message).catch(fail)
    else if (message.type === 'fill') fill(message)
    else {
      const stats = cache?.stats()
      const heraldStats = herald?.stats()
      shutdown().then(
        () =>
          send(
            {
              type: 'stopped',
              heraldNotifications: heraldStats?.notifications ?? 0,
              invalidationsReceived: stats?.invalidationsReceived ?? 0,
              rawNotifications,
            },
            () => process.disconnect(),
          ),
        fail,
      )
    }
  } catch (error) {
    fail(error)
  }
})
// The benchmark is gone (crashed or killed): close instead of idling on open connections.
process.on('disconnect', () => void shutdown())
