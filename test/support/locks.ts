import { Locks, type LocksOptions } from '@herald/lock'
import { startedHerald } from './heralds.js'

/** A started Herald with its Locks, both closed by `await using`. */
export async function locksOn(url: string, options: Omit<LocksOptions, 'herald'> = {}) {
  const herald = await startedHerald({
    connection: url,
    ...(options.applicationName !== undefined && { applicationName: options.applicationName }),
  })
  const locks = new Locks({ herald, ...options })
  return {
    herald,
    locks,
    async [Symbol.asyncDispose]() {
      await locks.close()
      await herald.close()
    },
  }
}
