import type { Lock } from '@herald/lock'
import { startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { locksOn } from '../support/locks.js'

let server: PgServer

beforeAll(async () => {
  server = await startPostgres({ label: 'lock-handover' })
})
afterAll(async () => {
  await server.close()
})

/** The last statement of an idle lock session and when it started (µs), from pg_stat_activity. */
async function lastLockStatement(
  applicationName: string,
): Promise<{ query: string; at: number } | undefined> {
  const [row] = await server.sql<{ query: string; at: string }[]>`
    select query, (extract(epoch from query_start) * 1e6)::bigint::text as at
    from pg_stat_activity
    where application_name = ${`${applicationName}-locks`} and state = 'idle'`
  return row === undefined ? undefined : { query: row.query.trim(), at: Number(row.at) }
}

// The shape of bench/lock-release: two instances hand two locks back and forth, each waiting
// for the other's lock while holding its own, so each lock session's heartbeat runs throughout.
// The sweep is too slow to help here: every hand-over must be woken by its release message.
describe('lock hand-over', () => {
  it('a waiter whose lock session ran a heartbeat after its failed try is still woken by the release', async () => {
    const options = { heartbeatMs: 1_000, sweepMs: 60_000 }
    await using holder = await locksOn(server.url, { ...options, applicationName: 'hb-holder' })
    await using waiter = await locksOn(server.url, { ...options, applicationName: 'hb-waiter' })
    const name = uniqueName('hb')
    const held = await holder.locks.acquire(name)
    const [start] = await server.sql<{ at: string }[]>`
      select (extract(epoch from clock_timestamp()) * 1e6)::bigint::text as at`
    // Holding another lock keeps the waiter's heartbeat running, as in the benchmark.
    const other = await waiter.locks.acquire(uniqueName('hb_other'))
    const waiting = waiter.locks.acquire(name, { timeoutMs: 5_000 })
    // Its try fails at once; the first heartbeat probe (heartbeatMs / 2 after taking `other`)
    // comes after it on the same session. The state in which the benchmark's "parked" check
    // (the waiter's last statement is its try) never held again, and the holder never released.
    await waitFor(
      async () => {
        const last = await lastLockStatement('hb-waiter')
        return last?.query === 'select pg_backend_pid() as pid' && last.at > Number(start?.at)
      },
      { intervalMs: 5 },
    )
    expect(waiter.locks.stats().waiting).toBe(1)
    const releasedAt = Date.now()
    await held.release()
    const lock = await waiting
    expect(Date.now() - releasedAt).toBeLessThan(1_000)
    expect(waiter.locks.stats().sweeps).toBe(0)
    await lock.release()
    await other.release()
  })

  it('hands two locks back and forth between instances 300 times, none hanging', async () => {
    const options = { heartbeatMs: 1_000, sweepMs: 60_000 }
    await using a = await locksOn(server.url, { ...options, applicationName: 'handover-a' })
    await using b = await locksOn(server.url, { ...options, applicationName: 'handover-b' })
    const instances = { a, b }
    const held: Record<'a' | 'b', Lock> = {
      a: await a.locks.acquire(uniqueName('handover_0')),
      b: await b.locks.acquire(uniqueName('handover_1')),
    }
    const rounds = 300
    for (let round = 0; round < rounds; round++) {
      const [giver, taker] = round % 2 === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const)
      const taking = instances[taker].locks.acquire(held[giver].name, { timeoutMs: 2_000 })
      const regaining = instances[giver].locks.acquire(held[taker].name, { timeoutMs: 2_000 })
      // Half the releases come at once (the waiters' first tries may still be running), half
      // once those tries have surely come back.
      if (round % 4 >= 2) await new Promise((resolve) => setTimeout(resolve, 1))
      await held[giver].release()
      const taken = await taking
      await held[taker].release()
      held[taker] = taken
      held[giver] = await regaining
    }
    expect(a.locks.stats()).toMatchObject({ acquired: rounds + 1, lost: 0 })
    expect(b.locks.stats()).toMatchObject({ acquired: rounds + 1, lost: 0 })
    await held.a.release()
    await held.b.release()
  })
})
