import type { Herald } from '@herald/core'
import { InvalidatingCache, type InvalidatingCacheOptions } from '@herald/lru'
import { afterEach } from 'vitest'

const open = new Set<InvalidatingCache<{}>>()

/** A cache closed by afterEach, whatever the test did. */
export async function readyCache<TValue extends {}>(
  herald: Herald,
  options: Partial<InvalidatingCacheOptions<TValue>> & { name: string },
): Promise<InvalidatingCache<TValue>> {
  const cache = new InvalidatingCache<TValue>({ herald, max: 10_000, ...options })
  open.add(cache as unknown as InvalidatingCache<{}>)
  await cache.ready()
  return cache
}

afterEach(async () => {
  const caches = [...open]
  open.clear()
  await Promise.all(caches.map((cache) => cache.close()))
})
