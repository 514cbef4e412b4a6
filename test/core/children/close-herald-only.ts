// Builds a cache, a config store and a lock manager on one Herald, holds a lock, then closes
// the Herald alone and returns: the process must exit by itself (the test gives it 15 s).
import { ConfigStore } from '@herald/config'
import { Herald } from '@herald/core'
import { Locks } from '@herald/lock'
import { InvalidatingCache } from '@herald/lru'
import { z } from 'zod'

const url = process.env['DATABASE_URL']!
const lockName = process.argv[2]!
const herald = new Herald({ connection: url, applicationName: 'close-herald-only' })
await herald.start()
const cache = new InvalidatingCache<string>({ herald, name: 'close-herald-only', max: 10 })
await cache.ready()
await cache.getOrLoad('k', () => Promise.resolve('v'))
const config = new ConfigStore({
  herald,
  namespace: 'close-herald-only',
  schema: { n: z.number().default(1) },
})
await config.start()
const locks = new Locks({ herald })
await locks.acquire(lockName)
console.log('HOLDING')

await herald.close()
const refused = await Promise.allSettled([cache.invalidate('k'), config.set('n', 2), locks.acquire('other')])
console.log(
  `CLOSED ${refused.map((outcome) => (outcome.status === 'rejected' ? (outcome.reason as { code?: string }).code : 'resolved')).join(' ')}`,
)
