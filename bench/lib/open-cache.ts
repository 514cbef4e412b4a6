import { Herald, type HeraldError } from '@herald/core'
import { InvalidatingCache } from '@herald/lru'
import { uniqueName } from '@herald/testing'
import type { User } from './users.js'

export interface OpenCache extends AsyncDisposable {
  readonly herald: Herald
  readonly cache: InvalidatingCache<User>
  /** Rejects as soon as the Herald or the cache reports an `'error'`: race it against the work. */
  readonly failure: Promise<never>
}

/**
 * A started Herald and a live InvalidatingCache on it (until `ready()` resolves a cache stores
 * nothing, and with the default `onDisconnect: 'bypass'` a cache that is not live misses on
 * every `get`). The cache gets a channel of its own unless `channel` is given.
 */
export async function openCache(
  url: string,
  options: { readonly applicationName: string; readonly max: number; readonly channel?: string },
): Promise<OpenCache> {
  const herald = new Herald({ connection: url, applicationName: options.applicationName })
  let fail: (error: HeraldError) => void = () => {}
  const failure = new Promise<never>((_, reject) => {
    fail = reject
  })
  failure.catch(() => {})
  // A background error (a lost listener, an invalid message) would make the figures lie.
  herald.on('error', (error) => fail(error))
  try {
    await herald.start()
    const cache = new InvalidatingCache<User>({
      herald,
      name: 'users',
      channel: options.channel ?? uniqueName('bench_lru'),
      max: options.max,
    })
    cache.on('error', (error) => fail(error))
    await cache.ready()
    return {
      herald,
      cache,
      failure,
      [Symbol.asyncDispose]: async () => {
        await cache.close()
        await herald.close()
      },
    }
  } catch (error) {
    await herald.close()
    throw error
  }
}
