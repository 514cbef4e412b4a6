/**
 * The process `lru-get.ts` measures in: the synchronous hit path of an InvalidatingCache and
 * of a bare lru-cache holding the same keys and values, read in the same random order.
 */
import type { InvalidatingCache } from '@herald/lru'
import { LRUCache } from 'lru-cache'
import { serveMeasurement } from './lib/measure-child.js'
import { openCache } from './lib/open-cache.js'
import { interleave } from './lib/repetitions.js'
import { makeUser, randomIndices, userKey, type User } from './lib/users.js'
import { KEYS, LOOKUPS, QUICK_LOOKUPS } from './lru-get-plan.js'

/** A power of two, so the timed loop picks its next index with a mask, not a modulo. */
const ORDER_LENGTH = 1 << 20

serveMeasurement(async ({ url, repetitions, discard, quick }) => {
  await using opened = await openCache(url, { applicationName: 'bench-lru-get', max: KEYS })
  const { cache } = opened
  const bare = new LRUCache<string, User>({ max: KEYS })
  const keys = Array.from({ length: KEYS }, (_, id) => userKey(id))
  keys.forEach((key, id) => {
    const user = makeUser(id)
    if (!cache.set(key, user)) throw new Error('the cache refused a set: not live')
    bare.set(key, user)
  })
  const order = randomIndices(ORDER_LENGTH, KEYS)
  const lookups = quick ? QUICK_LOOKUPS : LOOKUPS
  const measured = await interleave(['herald', 'bare'] as const, { repetitions, discard }, (id) => {
    const startedAt = performance.now()
    const hits =
      id === 'herald' ? readHerald(cache, keys, order, lookups) : readBare(bare, keys, order, lookups)
    const elapsedMs = performance.now() - startedAt
    if (hits !== lookups) throw new Error(`${id}: ${lookups - hits} of ${lookups} lookups missed`)
    return lookups / (elapsedMs / 1000)
  })
  const stats = cache.stats()
  return {
    measured,
    checks: {
      keys: KEYS,
      lookupsPerRepetition: lookups,
      heraldSize: stats.size,
      bareSize: bare.size,
      // Every lookup of every round a hit: the figures are hit paths, not misses.
      heraldHits: stats.hits,
      heraldMisses: stats.misses,
    },
  }
})

// One function per contender, so each call site stays monomorphic; the hit count is used,
// so no lookup can be optimized away.
function readHerald(
  cache: InvalidatingCache<User>,
  keys: readonly string[],
  order: Uint32Array,
  lookups: number,
): number {
  const mask = order.length - 1
  let hits = 0
  for (let i = 0; i < lookups; i++) {
    if (cache.get(keys[order[i & mask] as number] as string) !== undefined) hits++
  }
  return hits
}

function readBare(
  lru: LRUCache<string, User>,
  keys: readonly string[],
  order: Uint32Array,
  lookups: number,
): number {
  const mask = order.length - 1
  let hits = 0
  for (let i = 0; i < lookups; i++) {
    if (lru.get(keys[order[i & mask] as number] as string) !== undefined) hits++
  }
  return hits
}
