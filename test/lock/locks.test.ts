import { Locks } from '@herald/lock'
import { startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { locksOn } from '../support/locks.js'

let server: PgServer

beforeAll(async () => {
  server = await startPostgres({ label: 'locks' })
})
afterAll(async () => {
  await server.close()
})

describe('Locks', () => {
  it('a release wakes a waiter in another instance, which then holds the lock', async () => {
    await using a = await locksOn(server.url)
    await using b = await locksOn(server.url)
    const name = uniqueName('report')
    const held = await a.locks.acquire(name)
    let acquiredAt = 0
    const waiting = b.locks.acquire(name).then((lock) => {
      acquiredAt = Date.now()
      return lock
    })
    await waitFor(() => b.locks.stats().waiting === 1)
    expect(await b.locks.tryAcquire(name)).toBeUndefined()
    const releasedAt = Date.now()
    await held.release()
    const lock = await waiting
    expect(lock.held).toBe(true)
    // Woken by the message, not by the 1 s sweep.
    expect(acquiredAt - releasedAt).toBeLessThan(500)
    expect(b.locks.stats().sweeps).toBeLessThanOrEqual(1)
    await lock.release()
  })

  it('gives strictly increasing fencing tokens across instances', async () => {
    await using a = await locksOn(server.url)
    await using b = await locksOn(server.url)
    const name = uniqueName('fence')
    const tokens: bigint[] = []
    for (let i = 0; i < 6; i++) {
      const locks = i % 2 === 0 ? a.locks : b.locks
      await locks.withLock(name, (lock) => {
        tokens.push(lock.token)
      })
    }
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1] as bigint)
  })

  it('tryAcquire returns undefined on a held lock, in this process and in another', async () => {
    await using a = await locksOn(server.url)
    await using b = await locksOn(server.url)
    const name = uniqueName('try')
    const lock = await a.locks.tryAcquire(name)
    expect(lock).toBeDefined()
    expect(await a.locks.tryAcquire(name)).toBeUndefined()
    expect(await b.locks.tryAcquire(name)).toBeUndefined()
    await lock?.release()
    await lock?.release()
    const again = await b.locks.tryAcquire(name)
    expect(again).toBeDefined()
    await again?.release()
  })

  it('aborts and times out with typed errors, leaving no waiter behind', async () => {
    await using a = await locksOn(server.url)
    await using b = await locksOn(server.url)
    const name = uniqueName('abort')
    const lock = await a.locks.acquire(name)
    await expect(b.locks.acquire(name, { timeoutMs: 100 })).rejects.toMatchObject({ code: 'TIMEOUT' })
    const controller = new AbortController()
    const aborted = b.locks.acquire(name, { signal: controller.signal })
    setTimeout(() => controller.abort(new Error('user gave up')), 50)
    await expect(aborted).rejects.toMatchObject({ code: 'ABORTED' })
    await expect(b.locks.waitForRelease(name, { timeoutMs: 50 })).rejects.toMatchObject({ code: 'TIMEOUT' })
    // Same process: the local queue honours abort too.
    await expect(a.locks.acquire(name, { timeoutMs: 50 })).rejects.toMatchObject({ code: 'TIMEOUT' })
    expect(b.locks.stats().waiting).toBe(0)
    expect(a.locks.stats().waiting).toBe(0)
    await lock.release()
    const next = await b.locks.acquire(name, { timeoutMs: 5_000 })
    await next.release()
  })

  it('withLock releases when the function throws', async () => {
    await using a = await locksOn(server.url)
    const name = uniqueName('throws')
    await expect(
      a.locks.withLock(name, () => {
        throw new Error('boom')
      }),
    ).rejects.toThrow('boom')
    expect(a.locks.stats().held).toBe(0)
    const lock = await a.locks.tryAcquire(name)
    expect(lock).toBeDefined()
    await lock?.release()
  })

  it('serializes callers in one process (advisory locks are reentrant per session)', async () => {
    await using a = await locksOn(server.url)
    const name = uniqueName('local')
    let inside = 0
    let peak = 0
    await Promise.all(
      Array.from({ length: 20 }, () =>
        a.locks.withLock(name, async () => {
          inside++
          peak = Math.max(peak, inside)
          await new Promise((resolve) => setTimeout(resolve, 2))
          inside--
        }),
      ),
    )
    expect(peak).toBe(1)
  })

  it('1,000 waiters in one process wake on one release and cost no extra connections', async () => {
    const applicationName = uniqueName('many').slice(0, 30)
    await using a = await locksOn(server.url)
    await using b = await locksOn(server.url, { applicationName })
    const name = uniqueName('crowd')
    const lock = await a.locks.acquire(name)
    const countConnections = async () => {
      const [row] = await server.sql<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity where application_name like ${`${applicationName}%`}`
      return row?.n ?? 0
    }
    // Warm: the listener, both publish-pool connections and the lock session are open before we count.
    await b.locks.withLock(uniqueName('warm'), () => {})
    await Promise.all([b.herald.sql`select pg_sleep(0.05)`, b.herald.sql`select pg_sleep(0.05)`])
    const before = await countConnections()
    const released = Array.from({ length: 1_000 }, () => b.locks.waitForRelease(name, { timeoutMs: 20_000 }))
    const acquirers = Array.from({ length: 50 }, () =>
      b.locks.withLock(name, () => {}, { timeoutMs: 20_000 }),
    )
    await waitFor(() => b.locks.stats().waiting === 1_050)
    expect(await countConnections()).toBe(before)
    expect(before).toBe(4)
    await lock.release()
    await Promise.all(released)
    await Promise.all(acquirers)
    expect(await countConnections()).toBe(before)
    expect(b.locks.stats()).toMatchObject({ waiting: 0, held: 0 })
  })

  it('refuses bad names with INVALID_KEY', async () => {
    await using a = await locksOn(server.url)
    for (const name of ['', 42, null, undefined, 'x'.repeat(1_001)]) {
      await expect(a.locks.acquire(name as string)).rejects.toMatchObject({ code: 'INVALID_KEY' })
      await expect(a.locks.tryAcquire(name as string)).rejects.toMatchObject({ code: 'INVALID_KEY' })
    }
    expect(() => new Locks({ herald: a.herald, sweepMs: 0 })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTION' }),
    )
    const badConnection = () => new Locks({ herald: a.herald, lockConnection: 'postgres://u:p@[bad/db' })
    expect(badConnection).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }))
    expect(badConnection).toThrow(/^lockConnection /)
  })

  it('refuses to lock with CLOSED once its Herald is closed, even when built after the close', async () => {
    const a = await locksOn(server.url)
    await a.herald.close()
    const late = new Locks({ herald: a.herald })
    for (const locks of [a.locks, late]) {
      await expect(locks.acquire(uniqueName('after-close'))).rejects.toMatchObject({ code: 'CLOSED' })
      await expect(locks.tryAcquire(uniqueName('after-close'))).rejects.toMatchObject({ code: 'CLOSED' })
    }
    await late.close()
  })

  it('a forged release message costs a wasted attempt, never a lock held twice', async () => {
    await using a = await locksOn(server.url)
    await using b = await locksOn(server.url)
    const name = uniqueName('forged')
    const lock = await a.locks.acquire(name)
    let acquired = false
    const waiting = b.locks.acquire(name, { timeoutMs: 10_000 }).then((held) => {
      acquired = true
      return held
    })
    await waitFor(() => b.locks.stats().waiting === 1)
    const { lockKey } = await import('@herald/lock')
    await server.sql`select pg_notify('lock_release', ${JSON.stringify({ v: 1, o: 'forger', k: 'release', b: { k: lockKey(name).toString() } })})`
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(acquired).toBe(false)
    await lock.release()
    await (await waiting).release()
  })
})
