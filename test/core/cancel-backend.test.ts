import { startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collect, startedHerald } from '../support/heralds.js'
import { locksOn } from '../support/locks.js'

let server: PgServer
beforeAll(async () => {
  server = await startPostgres({ label: 'cancel-backend' })
})
afterAll(async () => {
  await server.close()
})

describe('pg_cancel_backend of the listener and of the lock session', () => {
  it('cancelled every 10 ms for 2 s under load: every message delivered or the gap reported, the lock held or reported lost', async () => {
    const applicationName = uniqueName('cancelled')
    await using sender = await startedHerald({ connection: server.url })
    await using target = await locksOn(server.url, { applicationName, heartbeatMs: 1_000 })
    const channel = uniqueName('cancel')
    const received = await collect<number>(target.herald, channel)
    let reconnects = 0
    target.herald.on('reconnected', () => reconnects++)
    const lost: unknown[] = []
    target.locks.on('lost', (event) => lost.push(event))
    const name = uniqueName('cancel-lock')
    const lock = await target.locks.acquire(name)

    let sent = 0
    let cancels = 0
    const until = Date.now() + 2_000
    while (Date.now() < until) {
      const [row] = await server.sql<{ n: number }[]>`
        select count(pg_cancel_backend(pid))::int as n from pg_stat_activity
        where application_name in (${applicationName + '-listener'}, ${applicationName + '-locks'})`
      cancels += row?.n ?? 0
      await sender.publish(channel, sent++)
      await sleep(10)
    }
    expect(cancels).toBeGreaterThan(100)
    // A final message proves the listener is (back) up.
    await sender.publish(channel, sent)
    await waitFor(() => received.payloads().includes(sent), { timeoutMs: 15_000 })
    const missing = Array.from({ length: sent }, (_, i) => i).filter((i) => !received.payloads().includes(i))
    if (missing.length > 0) expect(reconnects, `${missing.length} messages missing`).toBeGreaterThan(0)

    // The lock: still ours and nobody else's, or reported lost (then the signal says so).
    await sleep(1_500)
    await using other = await locksOn(server.url)
    const stolen = await other.locks.tryAcquire(name)
    if (lost.length === 0) {
      expect(lock.signal.aborted).toBe(false)
      expect(stolen).toBeUndefined()
      await lock.release()
    } else {
      expect(lock.signal.aborted).toBe(true)
      await stolen?.release()
    }
    console.log(
      `[cancel] ${cancels} cancels over 2 s: ${sent + 1} messages, ${missing.length} missing, ` +
        `${reconnects} reconnects, lock ${lost.length === 0 ? 'held throughout' : 'reported lost'}`,
    )
  })
})
