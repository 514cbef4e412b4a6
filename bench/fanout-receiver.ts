/**
 * One of the listening processes of `fanout.ts`: reports over IPC the moment each latency
 * ping reaches its handler (on the machine's clock, `performance.timeOrigin +
 * performance.now()`), and evicts a round's keys from an InvalidatingCache (Herald) or a Map
 * (postgres.js, pg-listen), saying when the last one has left.
 */
import { Herald } from '@herald/core'
import { InvalidatingCache } from '@herald/lru'
import postgres from 'postgres'
import { fanoutKey, type FanoutPing, type FromReceiver, type ToReceiver } from './fanout-messages.js'
import { makeUser, type User } from './lib/users.js'
import { failureReporter, sendToParent } from './lib/parent-channel.js'
import { openPgListen, type PgListen } from './lib/pg-listen.js'

let herald: Herald | undefined
let cache: InvalidatingCache<User> | undefined
let sql: postgres.Sql | undefined
let pgListen: PgListen | undefined
let closing: Promise<void> | undefined
const maps = { raw: new Map<string, User>(), pgListen: new Map<string, User>() }
const counts = {
  heraldPings: 0,
  rawPings: 0,
  rawKeyNotifications: 0,
  pgListenPings: 0,
  pgListenKeyNotifications: 0,
}
let round = -1
let remaining = 0

function now(): number {
  return performance.timeOrigin + performance.now()
}

function send(message: FromReceiver, then?: () => void): void {
  sendToParent(message, then)
}

const fail = failureReporter(() => shutdown())

function shutdown(): Promise<void> {
  closing ??= (async () => {
    await cache?.close()
    await Promise.all([herald?.close(), sql?.end({ timeout: 1 }), pgListen?.close()])
  })()
  return closing
}

function evicted(): void {
  if (--remaining === 0) send({ type: 'evicted', round })
}

async function start(message: Extract<ToReceiver, { type: 'start' }>): Promise<void> {
  herald = new Herald({ connection: message.url, applicationName: 'bench-fanout-receiver' })
  herald.on('error', fail)
  await herald.start()
  await herald.subscribe<FanoutPing>(message.heraldPing, (ping) => {
    const at = now()
    counts.heraldPings++
    send({ type: 'got', contender: 'herald', seq: ping.seq, at })
  })
  cache = new InvalidatingCache<User>({
    herald,
    name: 'users',
    channel: message.cacheChannel,
    max: message.max,
  })
  cache.on('error', fail)
  cache.on('evict', ({ reason }) => {
    if (reason === 'invalidate') evicted()
  })
  await cache.ready()
  sql = postgres(message.url, {
    onnotice: () => {},
    connection: { application_name: 'bench-fanout-receiver-raw' },
  })
  await sql.listen(message.rawPing, (text) => {
    const at = now()
    counts.rawPings++
    // Parsed, as Herald's handler gets an object.
    const ping = JSON.parse(text) as FanoutPing
    send({ type: 'got', contender: 'raw', seq: ping.seq, at })
  })
  await sql.listen(message.rawKeys, (key) => {
    counts.rawKeyNotifications++
    if (maps.raw.delete(key)) evicted()
  })
  pgListen = await openPgListen(message.url, 'bench-fanout-receiver-pg-listen')
  pgListen.failure.catch(fail)
  const { subscriber } = pgListen
  // Payloads arrive parsed (pg-listen's default JSON.parse): the ping as an object, the key,
  // sent JSON-encoded by its notify, as a string.
  subscriber.notifications.on(message.pgListenPing, (ping: FanoutPing) => {
    const at = now()
    counts.pgListenPings++
    send({ type: 'got', contender: 'pgListen', seq: ping.seq, at })
  })
  subscriber.notifications.on(message.pgListenKeys, (key: string) => {
    counts.pgListenKeyNotifications++
    if (maps.pgListen.delete(key)) evicted()
  })
  await subscriber.listenTo(message.pgListenPing)
  await subscriber.listenTo(message.pgListenKeys)
  send({ type: 'ready' })
}

function fill(message: Extract<ToReceiver, { type: 'fill' }>): void {
  if (remaining !== 0)
    throw new Error(`round ${round} still had ${remaining} keys when ${message.round} began`)
  round = message.round
  remaining = message.keys
  for (let id = 0; id < message.keys; id++) {
    const key = fanoutKey(message.round, id)
    if (message.contender !== 'herald') maps[message.contender].set(key, makeUser(id))
    else if (!cache?.set(key, makeUser(id))) throw new Error('the cache refused a set: not live')
  }
  send({ type: 'filled', round: message.round })
}

process.on('message', (message: ToReceiver) => {
  try {
    if (message.type === 'start') start(message).catch(fail)
    else if (message.type === 'fill') fill(message)
    else {
      const invalidationsReceived = cache?.stats().invalidationsReceived ?? 0
      shutdown().then(
        () => send({ type: 'stopped', ...counts, invalidationsReceived }, () => process.disconnect()),
        fail,
      )
    }
  } catch (error) {
    fail(error)
  }
})
// The benchmark is gone (crashed or killed): close instead of idling on open connections.
process.on('disconnect', () => void shutdown())
