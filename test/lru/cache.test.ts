import { uniqueName, waitFor, startPostgres, type PgServer } from '@herald/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { InvalidatingCache } from '@herald/lru'
import { readyCache } from '../support/caches.js'
import { newHerald, startedHerald } from '../support/heralds.js'

let server: PgServer

beforeAll(async () => {
  server = await startPostgres({ label: 'lru' })
})
afterAll(async () => {
  await server.close()
})

describe('InvalidatingCache', () => {
  it('evicts a key on every instance, and only in the cache of that name', async () => {
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => startedHerald({ connection: server.url })))
    const name = uniqueName('users')
    const caches = await Promise.all([a, b, c].map((herald) => readyCache<string>(herald!, { name })))
    const others = await Promise.all(
      [b, c].map((herald) => readyCache<string>(herald!, { name: `${name}_other` })),
    )
    for (const cache of [...caches, ...others]) cache.set('user:1', 'v1')
    await caches[0]!.invalidate('user:1')
    await waitFor(() => caches.every((cache) => cache.get('user:1') === undefined))
    expect(others.map((cache) => cache.get('user:1'))).toEqual(['v1', 'v1'])
    expect(caches[1]!.stats().invalidationsReceived).toBe(1)
    await Promise.all([a, b, c].map((herald) => herald!.close()))
  })

  it('runs concurrent getOrLoad of one key once, and serves hits after', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const cache = await readyCache<{ n: number }>(herald, { name: uniqueName('single') })
    let calls = 0
    const loader = async () => {
      calls++
      await new Promise((resolve) => setTimeout(resolve, 20))
      return { n: 42 }
    }
    const values = await Promise.all(Array.from({ length: 50 }, () => cache.getOrLoad('k', loader)))
    expect(calls).toBe(1)
    expect(new Set(values).size).toBe(1)
    expect(await cache.getOrLoad('k', loader)).toEqual({ n: 42 })
    expect(calls).toBe(1)
    expect(cache.stats()).toMatchObject({ loads: 1, coalesced: 49, hits: 1 })
  })

  it('set() reports an entry lru-cache refuses (over maxEntrySize), and leaves no tag behind', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const cache = await readyCache<string>(herald, {
      name: uniqueName('big'),
      maxEntrySize: 10,
      sizeCalculation: (value) => value.length,
    })
    expect(cache.set('small', 'ok', { tags: ['t'] })).toBe(true)
    expect(cache.set('big', 'x'.repeat(100), { tags: ['t'] })).toBe(false)
    expect(cache.get('big')).toBeUndefined()
    expect(cache.stats()).toMatchObject({ size: 1, taggedKeys: 1 })
    // Replacing a cached value with a refused one leaves neither.
    expect(cache.set('small', 'y'.repeat(100), { tags: ['t'] })).toBe(false)
    expect(cache.get('small')).toBeUndefined()
    expect(cache.stats()).toMatchObject({ size: 0, taggedKeys: 0 })
    expect(await cache.getOrLoad('big', () => 'z'.repeat(100), { tags: ['t'] })).toHaveLength(100)
    expect(cache.stats()).toMatchObject({ size: 0, taggedKeys: 0 })
  })

  it('evicts by tag on every instance, and reports reasons', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const name = uniqueName('tags')
    const atA = await readyCache<string>(a, { name })
    const atB = await readyCache<string>(b, { name })
    const reasons: string[] = []
    atB.on('evict', ({ key, reason }) => reasons.push(`${key}:${reason}`))
    atB.set('user:1', 'one', { tags: ['org:7'] })
    atB.set('user:2', 'two', { tags: ['org:7', 'team:1'] })
    atB.set('user:3', 'three', { tags: ['org:8'] })
    await atA.invalidateTags(['org:7'])
    await waitFor(() => atB.size === 1)
    expect(atB.get('user:3')).toBe('three')
    expect(reasons.sort()).toEqual(['user:1:tag', 'user:2:tag'])
  })

  it('invalidateAll empties the cache everywhere', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const name = uniqueName('all')
    const atA = await readyCache<string>(a, { name })
    const atB = await readyCache<string>(b, { name })
    for (let i = 0; i < 100; i++) atB.set(`k${i}`, 'v')
    await atA.invalidateAll()
    await waitFor(() => atB.size === 0)
    expect(atB.stats().flushes).toBe(1)
  })

  it('invalidates with { tx } on commit only, and not at all on rollback', async () => {
    const sql = server.connect({ max: 2 })
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const name = uniqueName('tx')
    const atA = await readyCache<string>(a, { name })
    const atB = await readyCache<string>(b, { name })
    atB.set('k', 'old')
    await expect(
      sql.begin(async (tx) => {
        await atA.invalidate('k', { tx })
        throw new Error('roll back')
      }),
    ).rejects.toThrow('roll back')
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    const committing = sql.begin(async (tx) => {
      await atA.invalidate('k', { tx })
      await held
    })
    // A marker published after both: when it has arrived, anything sent before it has too.
    const marker = uniqueName('marker')
    await atA.invalidate(marker)
    await waitFor(() => atB.stats().invalidationsReceived >= 1)
    expect(atB.get('k')).toBe('old')
    release()
    await committing
    await waitFor(() => atB.get('k') === undefined)
  })

  it('does not re-cache the old value on the invalidating instance before commit', async () => {
    const sql = server.connect({ max: 2 })
    await using herald = await startedHerald({ connection: server.url })
    const cache = await readyCache<string>(herald, { name: uniqueName('pending') })
    cache.set('k', 'old')
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    let invalidated!: () => void
    const invalidatedPromise = new Promise<void>((resolve) => (invalidated = resolve))
    const committing = sql.begin(async (tx) => {
      await cache.invalidate('k', { tx })
      invalidated()
      await held
    })
    await invalidatedPromise
    expect(cache.get('k')).toBeUndefined()
    // The row is still old for everyone else until commit: loading it now must not cache it.
    expect(await cache.getOrLoad('k', () => 'old')).toBe('old')
    expect(cache.set('k', 'old')).toBe(false)
    expect(cache.get('k')).toBeUndefined()
    release()
    await committing
    await waitFor(async () => (await cache.getOrLoad('k', () => 'new')) === 'new' && cache.get('k') === 'new')
  })

  it('delivers 100,000 keys in one call, chunked, and keys with quotes, newlines and emoji', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const name = uniqueName('many')
    const atA = await readyCache<string>(a, { name })
    const atB = await readyCache<string>(b, { name, max: 200_000 })
    const keys = Array.from({ length: 100_000 }, (_, i) => `user:${i}:"quoted"\n🎉'`)
    for (const key of keys) atB.set(key, 'v')
    atB.set('survivor', 'v')
    await atA.invalidate(keys)
    await waitFor(() => atB.size === 1, { timeoutMs: 20_000 })
    expect(atB.get('survivor')).toBe('v')
    expect(a.stats().notifies).toBeGreaterThan(100)
  })

  it('refuses bad keys and options with typed errors', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const cache = await readyCache<string>(herald, { name: uniqueName('bad') })
    expect(() => cache.get(42 as unknown as string)).toThrow(expect.objectContaining({ code: 'INVALID_KEY' }))
    expect(() => cache.set('', 'v')).toThrow(expect.objectContaining({ code: 'INVALID_KEY' }))
    expect(() => cache.set('k', 'v', { tags: [''] })).toThrow(
      expect.objectContaining({ code: 'INVALID_KEY' }),
    )
    await expect(cache.invalidate([null as unknown as string])).rejects.toMatchObject({ code: 'INVALID_KEY' })
    await expect(cache.invalidate({} as unknown as string)).rejects.toMatchObject({ code: 'INVALID_KEY' })
    await expect(readyCache(herald, { name: '' })).rejects.toMatchObject({ code: 'INVALID_OPTION' })
    await expect(readyCache(herald, { name: 'x', channel: 'bad channel' })).rejects.toMatchObject({
      code: 'INVALID_CHANNEL',
    })
    expect(() => cache.set('k', 'v')).not.toThrow()
    expect(cache.get('k')).toBe('v')
  })

  it('reports a malformed message on its channel and keeps working', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const name = uniqueName('forged')
    const cache = await readyCache<string>(herald, { name })
    const errors: string[] = []
    cache.on('error', (error) => errors.push(error.code))
    await using otherHerald = await startedHerald({ connection: server.url })
    await otherHerald.publish('cache_invalidation', { nonsense: true }, { kind: 'invalidate' })
    await otherHerald.publish('cache_invalidation', { c: name, k: [1, 2] }, { kind: 'invalidate' })
    cache.set('k', 'v')
    const other = await readyCache<string>(otherHerald, { name })
    await other.invalidate('k')
    await waitFor(() => cache.get('k') === undefined)
    expect(errors).toEqual(['PAYLOAD_INVALID', 'PAYLOAD_INVALID'])
  })

  it('evicts in every cache of that name, even two on the same Herald', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const name = uniqueName('twins')
    const first = await readyCache<string>(herald, { name })
    const second = await readyCache<string>(herald, { name })
    first.set('k', 'old')
    second.set('k', 'old')
    await first.invalidate('k')
    await waitFor(() => second.get('k') === undefined)
    expect(first.get('k')).toBeUndefined()
  })

  it('does not cache a load that started before the cache went live', async () => {
    const herald = newHerald({ connection: server.url })
    const cache = new InvalidatingCache<string>({ herald, name: uniqueName('early'), max: 10 })
    let open!: () => void
    const gate = new Promise<void>((resolve) => (open = resolve))
    // Read before the subscription exists: an invalidation now would go unheard.
    const loading = cache.getOrLoad('k', async () => {
      await gate
      return 'read before live'
    })
    await herald.start()
    await cache.ready()
    open()
    expect(await loading).toBe('read before live')
    expect(cache.get('k')).toBeUndefined()
    await cache.close()
    await herald.close()
  })

  it('a cache built before a start() that fails goes live once a later start() succeeds', async () => {
    const url = new URL(server.url)
    const good = url.toString()
    url.port = '1'
    const herald = newHerald({ connection: good, listenConnection: url.toString(), connectTimeoutMs: 200 })
    const cache = new InvalidatingCache<string>({ herald, name: uniqueName('late'), max: 10 })
    await expect(herald.start({ timeoutMs: 300 })).rejects.toMatchObject({ code: 'CONNECTION_FAILED' })
    await herald.close()
    // A fresh Herald for the retry, the way an app restarts its startup sequence.
    const retry = newHerald({ connection: good })
    const again = new InvalidatingCache<string>({ herald: retry, name: uniqueName('late2'), max: 10 })
    await retry.start()
    await again.ready()
    expect(again.set('k', 'v')).toBe(true)
    await cache.close()
    await again.close()
    await retry.close()
  })

  it('close() resolves for a cache whose Herald never started', async () => {
    const herald = newHerald({ connection: server.url })
    const cache = new InvalidatingCache<string>({ herald, name: uniqueName('never'), max: 10 })
    await herald.close()
    await cache.close()
    await expect(cache.ready()).rejects.toMatchObject({ code: 'CLOSED' })
  })
})
