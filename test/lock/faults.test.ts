import type { LostEvent } from '@herald/lock'
import { once, startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { locksOn } from '../support/locks.js'

// Terminates lock sessions: owns its server.
let server: PgServer

beforeAll(async () => {
  server = await startPostgres({ faults: true, label: 'lock-faults' })
})
afterAll(async () => {
  await server.close()
})

describe('lock faults', () => {
  it('a killed holder frees the lock without a message, and waiters learn of it within the sweep interval', async () => {
    await using holder = await locksOn(server.url, { applicationName: 'holder' })
    await using waiter = await locksOn(server.url, { applicationName: 'waiter', sweepMs: 500 })
    const name = uniqueName('crash')
    const lock = await holder.locks.acquire(name)
    const lost = once<LostEvent>(holder.locks, 'lost')
    let acquiredAt = 0
    const waiting = waiter.locks.acquire(name, { timeoutMs: 10_000 }).then((held) => {
      acquiredAt = Date.now()
      return held
    })
    await waitFor(() => waiter.locks.stats().waiting === 1)
    const killedAt = Date.now()
    expect(await server.terminate({ applicationName: 'holder-locks' })).toBe(1)
    const next = await waiting
    // Within one sweep interval (500 ms) plus the query and some slack for a shared machine.
    expect(acquiredAt - killedAt).toBeLessThan(1_500)
    expect(next.token).toBeGreaterThan(lock.token)
    // The old holder is told, so its work can stop.
    const event = await lost
    expect(event).toMatchObject({ name, token: lock.token })
    expect(event.error.code).toBe('LOCK_LOST')
    expect(lock.signal.aborted).toBe(true)
    expect(lock.held).toBe(false)
    await lock.release()
    await next.release()
  })

  it('after its session is lost, an instance can take locks again on a new one', async () => {
    await using a = await locksOn(server.url, { applicationName: 'again' })
    const name = uniqueName('again')
    const lock = await a.locks.acquire(name)
    const lost = once(a.locks, 'lost')
    await server.terminate({ applicationName: 'again-locks' })
    await lost
    await lock.release()
    const relock = await a.locks.acquire(name, { timeoutMs: 5_000 })
    expect(relock.token).toBeGreaterThan(lock.token)
    await relock.release()
  })

  it('a lost lock frees its name in this process at once, before (and without) release()', async () => {
    await using a = await locksOn(server.url, { applicationName: 'freed' })
    const name = uniqueName('freed')
    const lock = await a.locks.acquire(name)
    const lost = once(a.locks, 'lost')
    await server.terminate({ applicationName: 'freed-locks' })
    await lost
    const relock = await a.locks.acquire(name, { timeoutMs: 5_000 })
    expect(relock.held).toBe(true)
    expect(a.locks.stats().held).toBe(1)
    // The lost lock's release() is a no-op: it does not release the new holder.
    await lock.release()
    expect(relock.held).toBe(true)
    await relock.release()
    expect(a.locks.stats().held).toBe(0)
  })

  it('waiters re-check after the listener reconnects (a release sent in the gap is not lost)', async () => {
    await using holder = await locksOn(server.url, { applicationName: 'gap-holder' })
    // A sweep interval far beyond the test: only the reconnect check can wake the waiter.
    await using waiter = await locksOn(server.url, { applicationName: 'gap-waiter', sweepMs: 60_000 })
    const name = uniqueName('gap')
    const lock = await holder.locks.acquire(name)
    const waiting = waiter.locks.acquire(name, { timeoutMs: 10_000 })
    await waitFor(() => waiter.locks.stats().waiting === 1)
    await new Promise((resolve) => setTimeout(resolve, 100))
    const disconnected = once(waiter.herald, 'disconnected')
    await server.terminate({ applicationName: 'gap-waiter-listener' })
    await disconnected
    await lock.release() // its message goes nowhere: the waiter is not listening
    const next = await waiting
    expect(next.held).toBe(true)
    await next.release()
  })

  it('waitForRelease resolves when the holder is gone, even if the lock was taken again before a sweep saw it free', async () => {
    await using holder = await locksOn(server.url, { applicationName: 'handover-holder' })
    await using grabber = await locksOn(server.url, { applicationName: 'handover-grabber' })
    await using watcher = await locksOn(server.url, { applicationName: 'handover-watcher', sweepMs: 300 })
    const name = uniqueName('handover')
    const held = await holder.locks.acquire(name)
    const watching = watcher.locks.waitForRelease(name, { timeoutMs: 5_000 })
    await waitFor(() => watcher.locks.stats().waiting === 1)
    await new Promise((resolve) => setTimeout(resolve, 100))
    // The holder dies (no release message), and the lock is taken again at once.
    await server.terminate({ applicationName: 'handover-holder-locks' })
    const grabbed = await waitFor(() => grabber.locks.tryAcquire(name), { intervalMs: 1 })
    await watching
    expect(grabbed.held).toBe(true)
    await grabbed.release()
    await held.release()
  })
})
