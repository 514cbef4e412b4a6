/**
 * The other instance of `propagation.ts`: echoes every ping straight back, through the same
 * contender it arrived by, so the publisher can time a round trip on its own clock.
 */
import { Herald } from '@herald/core'
import postgres from 'postgres'
import type { FromReceiver, Ping, ToReceiver } from './propagation-messages.js'
import { failureReporter, sendToParent } from './lib/parent-channel.js'
import { openPgListen, type PgListen } from './lib/pg-listen.js'

let herald: Herald | undefined
let sql: postgres.Sql | undefined
let pgListen: PgListen | undefined
let closing: Promise<void> | undefined
const received = { herald: 0, raw: 0, pgListen: 0 }

function send(message: FromReceiver, then?: () => void): void {
  sendToParent(message, then)
}

const fail = failureReporter(() => shutdown())

function shutdown(): Promise<void> {
  closing ??= Promise.all([herald?.close(), sql?.end({ timeout: 1 }), pgListen?.close()]).then(
    () => undefined,
  )
  return closing
}

async function start(url: string, channels: Extract<ToReceiver, { type: 'start' }>): Promise<void> {
  herald = new Herald({ connection: url, applicationName: 'bench-receiver' })
  // A background error (lost listener, failed heartbeat) would make the figures lie.
  herald.on('error', fail)
  sql = postgres(url, { onnotice: () => {}, connection: { application_name: 'bench-receiver-raw' } })
  const rawSql = sql
  await herald.start()
  const started = herald
  // Handlers return nothing, for both contenders: the echo is fire-and-forget, like an
  // app's invalidation handler, and Herald's concurrency bookkeeping then stays out of it.
  await herald.subscribe<Ping>(channels.herald.ping, (ping) => {
    received.herald++
    started.publish(channels.herald.echo, ping).catch(fail)
  })
  await rawSql.listen(channels.raw.ping, (text) => {
    received.raw++
    // Parse and serialize again, as Herald does, so both echoes do the same JSON work.
    const ping = JSON.parse(text) as Ping
    rawSql.notify(channels.raw.echo, JSON.stringify(ping)).catch(fail)
  })
  pgListen = await openPgListen(url, 'bench-receiver-pg-listen')
  pgListen.failure.catch(fail)
  const { subscriber } = pgListen
  // pg-listen parses the payload (JSON.parse) before the handler and serializes it again in
  // notify (JSON.stringify): the same JSON work as the other two echoes.
  subscriber.notifications.on(channels.pgListen.ping, (ping: Ping) => {
    received.pgListen++
    subscriber.notify(channels.pgListen.echo, ping).catch(fail)
  })
  await subscriber.listenTo(channels.pgListen.ping)
  send({ type: 'ready' })
}

process.on('message', (message: ToReceiver) => {
  if (message.type === 'start') {
    start(message.url, message).catch(fail)
  } else {
    shutdown().then(() => send({ type: 'stopped', ...received }, () => process.disconnect()), fail)
  }
})
// The publisher is gone (crashed or killed): close instead of idling on open connections.
process.on('disconnect', () => void shutdown())
