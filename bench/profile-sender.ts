/**
 * The sending side of bench/profile.ts's receive loop, in a process of its own so that none
 * of its work lands in the receiver's profile. Each `send` is one statement of `count`
 * NOTIFYs, each a one-key invalidation enveloped as Herald sends it; the parent paces them.
 */
import postgres from 'postgres'
import { failureReporter, sendToParent } from './lib/parent-channel.js'

export type ToSender =
  | { readonly type: 'start'; readonly url: string; readonly channel: string }
  | { readonly type: 'send'; readonly from: number; readonly count: number }
  | { readonly type: 'stop' }

export type FromSender = { readonly type: 'ready' } | { readonly type: 'sent' }

let sql: postgres.Sql | undefined
let channel = ''

const shutdown = async (): Promise<void> => {
  await sql?.end({ timeout: 1 })
  sql = undefined
}
const fail = failureReporter(shutdown)

async function handle(message: ToSender): Promise<void> {
  switch (message.type) {
    case 'start':
      sql = postgres(message.url, {
        max: 2,
        onnotice: () => {},
        connection: { application_name: 'profile-sender' },
      })
      channel = message.channel
      await sql`select 1`
      return sendToParent<FromSender>({ type: 'ready' })
    case 'send': {
      if (sql === undefined) throw new Error('send before start')
      const last = message.from + message.count - 1
      // Built server-side: distinct payloads (one transaction folds identical NOTIFYs into one).
      await sql`
        select pg_notify(${channel},
          '{"v":1,"o":"profile-sender","k":"invalidate","b":{"c":"users","k":["user:' || i || '"]}}')
        from generate_series(${message.from}::int, ${last}::int) as i`
      return sendToParent<FromSender>({ type: 'sent' })
    }
    case 'stop':
      await shutdown()
      process.disconnect()
  }
}

process.on('message', (message: ToSender) => void handle(message).catch(fail))
