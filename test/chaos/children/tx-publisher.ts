// Publishes inside a transaction that never commits: `tx-publisher.ts <url> <channel> <cache> <namespace> <table>`.
// It prints the transaction's backend pid, then waits inside the transaction until the test
// terminates that backend. postgres.js may crash this process when that happens
// (porsager/postgres#1154): that is why this runs in a child, not in the test.
import { Herald } from '@herald/core'
import { ConfigStore } from '@herald/config'
import { InvalidatingCache } from '@herald/lru'
import postgres from 'postgres'
import { z } from 'zod'

const [url = '', channel = '', cacheName = '', namespace = '', table = ''] = process.argv.slice(2)
const sql = postgres(url, { max: 2, onnotice: () => {}, connection: { application_name: 'chaos-txpub-tx' } })
const herald = new Herald({ connection: url, sql, applicationName: 'chaos-txpub' })
await herald.start()
const cache = new InvalidatingCache<string>({ herald, name: cacheName, max: 100 })
await cache.ready()
const config = new ConfigStore({
  herald,
  namespace,
  pollMs: 0,
  schema: { rateLimit: z.number().int().positive().default(100), banner: z.string().optional() },
})
await config.start()
process.on('unhandledRejection', (reason) => console.log(`unhandled ${String(reason)}`))
try {
  await sql.begin(async (tx) => {
    await tx`insert into ${tx(table)} (k, v) values ('doomed', 1)`
    await herald.publish(channel, { doomed: true }, { tx })
    await cache.invalidate('doomed-key', { tx })
    await config.set('banner', 'doomed', { tx })
    const [row] = await tx<{ pid: number }[]>`select pg_backend_pid() as pid`
    console.log(`in-tx ${row?.pid}`)
    await tx`select pg_sleep(60)`
  })
  console.log('committed')
} catch (error) {
  console.log(`rolled-back ${String(error)}`)
}
