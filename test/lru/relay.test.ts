import { HeraldError } from '@herald/core'
import { InvalidatingCache } from '@herald/lru'
import { startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import type postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readyCache } from '../support/caches.js'
import { startedHerald } from '../support/heralds.js'

// Pauses a publisher backend: owns its server.
let server: PgServer
let sql: postgres.Sql

beforeAll(async () => {
  server = await startPostgres({ faults: true, label: 'lru-relay' })
  sql = server.connect({ max: 40, connection: { application_name: 'relay-writer' } })
})
afterAll(async () => {
  await server.close()
})

const RELAY = { durable: { relay: true, pollMs: 200 } } as const

/** Resolves when `open()` is called: holds a transaction open at a chosen point. */
function gate(): { readonly closed: Promise<void>; open(): void } {
  let open!: () => void
  const closed = new Promise<void>((resolve) => (open = resolve))
  return { closed, open }
}

describe('durable.relay: transactional invalidations leave the transaction as a log row', () => {
  it('evicts on commit only, never on rollback, and NOTIFYs nothing inside the transaction', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const name = uniqueName('relay')
    const atA = await readyCache<string>(a, { name, ...RELAY })
    // Not durable: B can only hear the relayed NOTIFY.
    const atB = await readyCache<string>(b, { name })
    atB.set('k', 'old')

    await expect(
      sql.begin(async (tx) => {
        await atA.invalidate('k', { tx })
        throw new Error('roll back')
      }),
    ).rejects.toThrow('roll back')
    await waitFor(() => atA.stats().pendingInvalidations === 0)

    const held = gate()
    const invalidated = gate()
    const notifiesBefore = a.stats().notifies
    const committing = sql.begin(async (tx) => {
      await tx`select 1`
      await atA.invalidate('k', { tx })
      invalidated.open()
      await held.closed
    })
    await invalidated.closed
    // Inside the transaction: a log row, no NOTIFY (so no NOTIFY commit lock for this writer).
    expect(a.stats().notifies).toBe(notifiesBefore)
    const [row] = await sql<{ rows: number }[]>`
      select count(*)::int as rows from herald.cache_invalidations where cache = ${name}`
    expect(row?.rows).toBe(0) // not visible before commit
    // Longer than the relay's first looks: it must keep waiting for the open transaction.
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(atB.get('k')).toBe('old')
    expect(atA.stats().pendingInvalidations).toBe(1)

    held.open()
    await committing
    await waitFor(() => atB.get('k') === undefined, { timeoutMs: 2_000 })
    await waitFor(() => a.stats().notifies > notifiesBefore)
    expect(a.stats().notifies).toBe(notifiesBefore + 1)
    expect(atA.stats().pendingInvalidations).toBe(0)
  })

  it('keeps the old value out of the invalidating instance until commit, and caches the new one after', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const cache = await readyCache<string>(herald, { name: uniqueName('relay-local'), ...RELAY })
    cache.set('k', 'old')
    const held = gate()
    const invalidated = gate()
    const committing = sql.begin(async (tx) => {
      await cache.invalidate('k', { tx })
      invalidated.open()
      await held.closed
    })
    await invalidated.closed
    expect(cache.get('k')).toBeUndefined()
    expect(await cache.getOrLoad('k', () => 'old')).toBe('old')
    expect(cache.set('k', 'old')).toBe(false)
    // A load that read the old row just before the commit and returns after it.
    const lateLoad = gate()
    const loading = cache.getOrLoad('k', async () => {
      await lateLoad.closed
      return 'old'
    })
    held.open()
    await committing
    await waitFor(() => cache.stats().pendingInvalidations === 0)
    lateLoad.open()
    expect(await loading).toBe('old')
    expect(cache.get('k')).toBeUndefined()
    expect(await cache.getOrLoad('k', () => 'new')).toBe('new')
    expect(cache.get('k')).toBe('new')
  })

  it('shares NOTIFYs among many writers; a stalled relay is made good by the log poll elsewhere', async () => {
    // One publish connection, so pausing it stalls everything A sends.
    await using a = await startedHerald({
      connection: server.url,
      applicationName: 'relay-a',
      publishPoolSize: 1,
    })
    await using b = await startedHerald({ connection: server.url })
    const name = uniqueName('relay-many')
    const atA = await readyCache<string>(a, { name, ...RELAY })
    const atB = await readyCache<string>(b, { name, durable: { pollMs: 200 } })
    const keys = Array.from({ length: 32 }, (_, i) => `k${i}`)
    for (const key of keys) atB.set(key, 'old')

    const held = gate()
    let invalidated = 0
    const writers = keys.map((key) =>
      sql.begin(async (tx) => {
        await atA.invalidate(key, { tx })
        invalidated++
        await held.closed
      }),
    )
    await waitFor(() => invalidated === keys.length)
    // A's relay cannot reach the server: its commits can only reach B through the log.
    const publishers = await server.backendPids({ applicationName: 'relay-a-publisher' })
    expect(publishers.length).toBeGreaterThan(0)
    const notifiesBefore = a.stats().notifies
    for (const pid of publishers) await server.pause(pid)
    try {
      held.open()
      await Promise.all(writers)
      await waitFor(() => keys.every((key) => atB.get(key) === undefined), { timeoutMs: 5_000 })
      expect(atB.stats().invalidationsReceived).toBe(0)
      expect(atB.stats().replayedRows).toBe(keys.length)
    } finally {
      for (const pid of publishers) await server.resume(pid)
    }
    // Resumed, A sees every commit in at most two looks (one may have been in flight), and
    // relays them in as many NOTIFYs, not 32.
    await waitFor(() => atA.stats().pendingInvalidations === 0, { timeoutMs: 5_000 })
    await waitFor(() => a.stats().notifies > notifiesBefore)
    expect(a.stats().notifies - notifiesBefore).toBeLessThanOrEqual(2)
    expect(atA.stats().invalidationsSent).toBeLessThanOrEqual(2)
  })

  it('announces every commit of many writers to a peer that only hears NOTIFYs', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const name = uniqueName('relay-all')
    const atA = await readyCache<string>(a, { name, ...RELAY })
    // Not durable, no log poll to fall back on: every key must come in a relayed message.
    const atB = await readyCache<string>(b, { name })
    const keys = Array.from({ length: 32 }, (_, i) => `k${i}`)
    for (const key of keys) atB.set(key, 'old')
    const held = gate()
    let invalidated = 0
    const writers = keys.map((key, i) =>
      sql.begin(async (tx) => {
        await atA.invalidate(i % 4 === 0 ? [key, `${key}:also`] : key, { tx })
        invalidated++
        await held.closed
      }),
    )
    await waitFor(() => invalidated === keys.length)
    held.open()
    await Promise.all(writers)
    await waitFor(() => keys.every((key) => atB.get(key) === undefined), { timeoutMs: 5_000 })
  })

  it('keeps relaying after its connection is killed mid-look', async () => {
    await using a = await startedHerald({
      connection: server.url,
      applicationName: 'relay-killed',
      publishPoolSize: 1,
    })
    await using b = await startedHerald({ connection: server.url })
    const name = uniqueName('relay-killed')
    const atA = await readyCache<string>(a, { name, ...RELAY })
    const errors: unknown[] = []
    atA.on('error', (error) => errors.push(error))
    const atB = await readyCache<string>(b, { name })
    atB.set('k', 'old')
    const held = gate()
    const invalidated = gate()
    const writing = sql.begin(async (tx) => {
      await atA.invalidate('k', { tx })
      invalidated.open()
      await held.closed
    })
    await invalidated.closed
    // The relay is waiting on this connection when it dies.
    const [publisher] = await server.backendPids({ applicationName: 'relay-killed-publisher' })
    expect(publisher).toBeDefined()
    await server.pause(publisher as number)
    held.open()
    await writing
    await server.terminate(publisher)
    await server.resume(publisher as number)
    await waitFor(() => atB.get('k') === undefined, { timeoutMs: 5_000 })
    expect(atA.stats().pendingInvalidations).toBe(0)
  })

  it('relays a commit made just before close()', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const name = uniqueName('relay-close')
    const atA = new InvalidatingCache<string>({ herald: a, name, max: 10, ...RELAY })
    await atA.ready()
    // Without durable here: B hears only the NOTIFY, so the eviction proves the relay sent it.
    const atB = await readyCache<string>(b, { name })
    atB.set('k', 'old')
    await sql.begin(async (tx) => {
      await atA.invalidate('k', { tx })
    })
    await atA.close()
    await waitFor(() => atB.get('k') === undefined, { timeoutMs: 2_000 })
  })

  it('refuses a relay option that is not a boolean', async () => {
    await using herald = await startedHerald({ connection: server.url })
    expect(
      () =>
        new InvalidatingCache({
          herald,
          name: 'x',
          max: 1,
          durable: { relay: 'yes' as unknown as boolean },
        }),
    ).toThrow(HeraldError)
  })
})
