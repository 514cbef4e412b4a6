/**
 * The process `lru-get-or-load.ts` measures in: an awaited hit through InvalidatingCache's
 * `getOrLoad`, through an awaited bare lru-cache `get`, and through bentocache's `getOrSet`
 * on its memory driver (by reference, and serialized as bentocache does by default).
 */
import type { InvalidatingCache } from '@herald/lru'
import { BentoCache, bentostore } from 'bentocache'
import { memoryDriver } from 'bentocache/drivers/memory'
import { LRUCache } from 'lru-cache'
import { serveMeasurement } from './lib/measure-child.js'
import { openCache } from './lib/open-cache.js'
import { interleave } from './lib/repetitions.js'
import { makeUser, randomIndices, userKey, type User } from './lib/users.js'
import { BENTO_SHARE, KEYS, LOOKUPS, QUICK_LOOKUPS } from './lru-get-or-load-plan.js'

/** A power of two, so the timed loop picks its next index with a mask, not a modulo. */
const ORDER_LENGTH = 1 << 20
const CONTENDERS = ['herald', 'bare', 'bento', 'bentoSerialized'] as const
type Id = (typeof CONTENDERS)[number]

/** Every lookup is a hit: a loader or factory that runs is a bug in the benchmark. */
let loads = 0
const miss = (): User => {
  loads++
  return makeUser(-1)
}

serveMeasurement(async ({ url, repetitions, discard, quick }) => {
  await using opened = await openCache(url, { applicationName: 'bench-lru-get-or-load', max: KEYS })
  const { cache } = opened
  const bare = new LRUCache<string, User>({ max: KEYS })
  // Memory driver only, no L2, no bus. `serialize: false` keeps values by reference, as Herald
  // and lru-cache do; the default (`true`) stores JSON and parses it on every hit.
  const bento = bentoCache({ serialize: false })
  const bentoSerialized = bentoCache({})
  try {
    const keys = Array.from({ length: KEYS }, (_, id) => userKey(id))
    for (const [id, key] of keys.entries()) {
      const user = makeUser(id)
      if (!cache.set(key, user)) throw new Error('the cache refused a set: not live')
      bare.set(key, user)
      await bento.set({ key, value: user })
      await bentoSerialized.set({ key, value: user })
    }
    const order = randomIndices(ORDER_LENGTH, KEYS)
    const lookups = quick ? QUICK_LOOKUPS : LOOKUPS
    const bentoLookups = lookups / BENTO_SHARE
    const readers: Record<Id, () => Promise<number>> = {
      herald: () => readHerald(cache, keys, order, lookups),
      bare: () => readBare(bare, keys, order, lookups),
      bento: () => readBento(bento, keys, order, bentoLookups),
      bentoSerialized: () => readBento(bentoSerialized, keys, order, bentoLookups),
    }
    const measured = await interleave(CONTENDERS, { repetitions, discard }, async (id) => {
      const expected = id.startsWith('bento') ? bentoLookups : lookups
      const startedAt = performance.now()
      const hits = await Promise.race([readers[id](), opened.failure])
      const elapsedMs = performance.now() - startedAt
      if (hits !== expected) throw new Error(`${id}: ${expected - hits} of ${expected} lookups missed`)
      return expected / (elapsedMs / 1000)
    })
    const stats = cache.stats()
    return {
      measured,
      checks: {
        keys: KEYS,
        lookupsPerRepetition: lookups,
        bentoLookupsPerRepetition: bentoLookups,
        heraldSize: stats.size,
        bareSize: bare.size,
        heraldHits: stats.hits,
        heraldMisses: stats.misses,
        heraldLoads: stats.loads,
        // Loader and factory calls of every contender: 0, or some lookup was a miss.
        loaderCalls: loads,
      },
    }
  } finally {
    await Promise.all([bento.disconnectAll(), bentoSerialized.disconnectAll()])
  }
})

function bentoCache(driver: { serialize?: boolean }) {
  return new BentoCache({
    default: 'memory',
    stores: { memory: bentostore().useL1Layer(memoryDriver({ maxItems: KEYS, ...driver })) },
  })
}

// One function per contender, so each call site stays monomorphic; every value is used.
async function readHerald(
  cache: InvalidatingCache<User>,
  keys: readonly string[],
  order: Uint32Array,
  lookups: number,
): Promise<number> {
  const mask = order.length - 1
  let hits = 0
  for (let i = 0; i < lookups; i++) {
    const user = await cache.getOrLoad(keys[order[i & mask] as number] as string, miss)
    if (user.id >= 0) hits++
  }
  return hits
}

async function readBare(
  lru: LRUCache<string, User>,
  keys: readonly string[],
  order: Uint32Array,
  lookups: number,
): Promise<number> {
  const mask = order.length - 1
  let hits = 0
  for (let i = 0; i < lookups; i++) {
    // Awaited like the others, though lru-cache answers synchronously: this is the floor of
    // any promise-returning hit path, which is the point of this contender.
    // eslint-disable-next-line @typescript-eslint/await-thenable
    const user = await lru.get(keys[order[i & mask] as number] as string)
    if (user !== undefined && user.id >= 0) hits++
  }
  return hits
}

async function readBento(
  bento: ReturnType<typeof bentoCache>,
  keys: readonly string[],
  order: Uint32Array,
  lookups: number,
): Promise<number> {
  const mask = order.length - 1
  let hits = 0
  for (let i = 0; i < lookups; i++) {
    const user = await bento.getOrSet({ key: keys[order[i & mask] as number] as string, factory: miss })
    if (user.id >= 0) hits++
  }
  return hits
}
