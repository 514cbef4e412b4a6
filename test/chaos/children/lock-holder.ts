// Holds a lock until killed: `lock-holder.ts <url> <lock name> <applicationName>`.
import { Herald } from '@herald/core'
import { Locks } from '@herald/lock'

const [url = '', name = '', applicationName = 'chaos-holder'] = process.argv.slice(2)
const herald = new Herald({ connection: url, applicationName })
await herald.start()
const locks = new Locks({ herald, applicationName })
const lock = await locks.acquire(name, { timeoutMs: 10_000 })
console.log(`held ${lock.token}`)
// Keep the process (and the lock) alive until SIGKILL.
setInterval(() => {}, 60_000)
