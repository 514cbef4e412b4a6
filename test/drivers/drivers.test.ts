import { isHeraldError, type TransactionClient } from '@herald/core'
import { startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readyCache } from '../support/caches.js'
import { collect, startedHerald } from '../support/heralds.js'
import { namespace, startedConfig } from '../config/support.js'
import { drivers, endUnusedPools, type Driver } from './drivers.js'

let server: PgServer

beforeAll(async () => {
  server = await startPostgres({ label: 'drivers' })
})
afterAll(async () => {
  await endUnusedPools()
  await server?.close()
})

/**
 * Runs `body` in a transaction of `driver` and `whileOpen` while that transaction is still open
 * (after `body`, before commit), then commits.
 */
async function holdOpen(
  driver: Driver,
  body: (tx: TransactionClient) => Promise<void>,
  whileOpen: () => Promise<void>,
): Promise<void> {
  let release!: () => void
  const gate = new Promise<void>((resolve) => (release = resolve))
  let entered!: () => void
  const inside = new Promise<void>((resolve) => (entered = resolve))
  const committing = driver.transaction(async (tx) => {
    await body(tx)
    entered()
    await gate
  })
  await Promise.race([inside, committing])
  try {
    await whileOpen()
  } finally {
    release()
  }
  await committing
}

async function rolledBack(driver: Driver, body: (tx: TransactionClient) => Promise<void>): Promise<void> {
  const rollback = new Error('roll back')
  await expect(
    driver.transaction(async (tx) => {
      await body(tx)
      throw rollback
    }),
  ).rejects.toBe(rollback)
}

describe.each(Object.keys(drivers))('{ tx } from %s', (driverName) => {
  let driver: Driver
  beforeAll(() => {
    driver = drivers[driverName]!(server.url)
  })
  afterAll(async () => {
    await driver?.close()
  })

  it('invalidates on another instance only at commit, nothing on rollback, and blocks the local re-cache until commit', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const name = uniqueName('drv')
    const atA = await readyCache<string>(a, { name })
    const atB = await readyCache<string>(b, { name })
    const fill = () => {
      atB.set('k1', 'old')
      atB.set('k2', 'old', { tags: ['t'] })
      atB.set('k3', 'old')
    }
    // A key invalidated without a transaction after the others: once B has dropped it, B has
    // received everything sent before it.
    const settle = async () => {
      const marker = uniqueName('marker')
      atB.set(marker, 'x')
      await atA.invalidate(marker)
      await waitFor(() => atB.get(marker) === undefined)
    }
    fill()

    await rolledBack(driver, async (tx) => {
      await atA.invalidate('k1', { tx })
      await atA.invalidateTags('t', { tx })
      await atA.invalidateAll({ tx })
    })
    await settle()
    expect([atB.get('k1'), atB.get('k2'), atB.get('k3')]).toEqual(['old', 'old', 'old'])

    await holdOpen(
      driver,
      async (tx) => {
        await atA.invalidate('k1', { tx })
        await atA.invalidateTags(['t'], { tx })
      },
      async () => {
        await settle()
        expect([atB.get('k1'), atB.get('k2')]).toEqual(['old', 'old'])
        // Everyone else still reads the old row until commit: A must not cache it meanwhile.
        expect(atA.set('k1', 'old')).toBe(false)
        expect(await atA.getOrLoad('k1', () => 'old')).toBe('old')
        expect(atA.get('k1')).toBeUndefined()
      },
    )
    await waitFor(() => atB.get('k1') === undefined && atB.get('k2') === undefined)
    expect(atB.get('k3')).toBe('old')
    await waitFor(() => atA.set('k1', 'new'))

    await driver.transaction(async (tx) => {
      await atA.invalidateAll({ tx })
    })
    await waitFor(() => atB.size === 0)
  })

  it('delivers a durable cache’s logged invalidation at commit, and none on rollback', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const name = uniqueName('drvlog')
    const atA = await readyCache<string>(a, { name, durable: true })
    const atB = await readyCache<string>(b, { name, durable: true })
    atB.set('gone', 'old')
    atB.set('kept', 'old')
    await rolledBack(driver, (tx) => atA.invalidate('kept', { tx }))
    await driver.transaction((tx) => atA.invalidate('gone', { tx }))
    await waitFor(() => atB.get('gone') === undefined)
    const marker = uniqueName('marker')
    atB.set(marker, 'x')
    await atA.invalidate(marker)
    await waitFor(() => atB.get(marker) === undefined)
    expect(atB.get('kept')).toBe('old')
  })

  it('publishes at commit only', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const channel = uniqueName('drvpub')
    const received = await collect<{ n: number }>(b, channel)
    await rolledBack(driver, (tx) => a.publish(channel, { n: 1 }, { tx }))
    await holdOpen(
      driver,
      (tx) => a.publish(channel, { n: 2 }, { tx }),
      async () => {
        await a.publish(channel, { n: 3 })
        await received.count(1)
      },
    )
    await received.count(2)
    expect(received.payloads()).toEqual([{ n: 3 }, { n: 2 }])
  })

  it('sets, resets and rolls back config inside the transaction, seen everywhere at commit', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const ns = namespace('drvcfg')
    const atA = await startedConfig(a, ns)
    const atB = await startedConfig(b, ns)
    const first = await atA.set('rateLimit', 7)

    await rolledBack(driver, async (tx) => {
      await atA.set('rateLimit', 666, { tx })
    })
    await holdOpen(
      driver,
      async (tx) => {
        await atA.set('banner', 'from the transaction', { tx })
        await atA.set('rateLimit', 8, { tx })
      },
      async () => {
        await waitFor(() => atB.get('rateLimit') === 7)
        expect(atA.get('banner')).toBeUndefined()
      },
    )
    await waitFor(() => atB.get('banner') === 'from the transaction' && atB.get('rateLimit') === 8)

    await driver.transaction(async (tx) => {
      await atA.rollback('rateLimit', first, { tx })
      await atA.reset('banner', { tx })
    })
    await waitFor(() => atB.get('rateLimit') === 7 && atB.get('banner') === undefined)
    // A write in \`tx\` reaches its own instance by the hint too (only the commit says it happened).
    await waitFor(() => atA.get('banner') === undefined)
    expect(atB.version).toBe(atA.version)
  })

  it('refuses an object that is not an open transaction with INVALID_OPTION, before any I/O', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const name = uniqueName('drvbad')
    const atA = await readyCache<string>(a, { name })
    const atB = await readyCache<string>(b, { name })
    const config = await startedConfig(a, namespace('drvbad'))
    const channel = uniqueName('drvbad')
    const received = await collect(b, channel)
    const notifiesBefore = a.stats().notifies
    for (const { what, object, ioCount } of await driver.notTransactions()) {
      // Plain JavaScript callers can pass anything; TypeScript callers get a type error first.
      const tx = object as TransactionClient
      atA.set('k', 'cached')
      atB.set('k', 'cached')
      const calls: [string, () => Promise<unknown>][] = [
        ['invalidate', () => atA.invalidate('k', { tx })],
        ['invalidateTags', () => atA.invalidateTags('t', { tx })],
        ['invalidateAll', () => atA.invalidateAll({ tx })],
        ['publish', () => a.publish(channel, 'never', { tx })],
        ['config.set', () => config.set('rateLimit', 9, { tx })],
        ['config.reset', () => config.reset('rateLimit', { tx })],
        ['config.rollback', () => config.rollback('rateLimit', 1, { tx })],
      ]
      for (const [call, run] of calls) {
        const error: unknown = await run().then(
          () => undefined,
          (error: unknown) => error,
        )
        expect(isHeraldError(error) && error.code, `${call} with ${what}`).toBe('INVALID_OPTION')
        expect(isHeraldError(error) && error.message).toMatch(/not a transaction|no open transaction/)
      }
      expect(atA.get('k'), `${what}: nothing evicted locally`).toBe('cached')
      expect(ioCount?.() ?? 0, `${what}: no connection opened`).toBe(0)
    }
    expect(a.stats().notifies).toBe(notifiesBefore)
    expect(config.get('rateLimit')).toBe(100)
    expect(received.messages).toEqual([])
  })
})

describe('{ tx } that is no transaction at all', () => {
  it('refuses values of no known driver with INVALID_OPTION', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const cache = await readyCache<string>(herald, { name: uniqueName('drvnone') })
    for (const [index, tx] of [
      42,
      'begin',
      {},
      [],
      () => {},
      { query: 'select 1' },
      Promise.resolve(),
    ].entries()) {
      await expect(
        cache.invalidate('k', { tx: tx as TransactionClient }),
        `value ${index}`,
      ).rejects.toMatchObject({
        code: 'INVALID_OPTION',
      })
      await expect(herald.publish('c', 1, { tx: tx as TransactionClient })).rejects.toMatchObject({
        code: 'INVALID_OPTION',
      })
    }
  })
})
