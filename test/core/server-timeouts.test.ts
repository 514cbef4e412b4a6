import { startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { locksOn } from '../support/locks.js'

// Timeouts a DBA sets for every session of a database, tuned for the app's queries: Herald's
// listener and lock session, idle by design, must outlive them.
let server: PgServer
beforeAll(async () => {
  server = await startPostgres({ faults: true, label: 'server-timeouts' }) // its own: the settings below are database-wide
  await server.sql.unsafe(`alter database postgres set idle_session_timeout = '300ms'`)
  await server.sql.unsafe(`alter database postgres set statement_timeout = '50ms'`)
  await server.sql.unsafe(`alter database postgres set idle_in_transaction_session_timeout = '100ms'`)
})
afterAll(async () => {
  await server.close()
})

describe('database-level idle_session_timeout, statement_timeout and idle_in_transaction_session_timeout', () => {
  it('the settings are in force for a new session', async () => {
    const sql = server.connect({ max: 1 })
    try {
      const [row] = await sql<{ idle: string; statement: string }[]>`
        select current_setting('idle_session_timeout') as idle, current_setting('statement_timeout') as statement`
      expect(row).toEqual({ idle: '300ms', statement: '50ms' })
      await expect(sql`select pg_sleep(0.2)`).rejects.toMatchObject({ code: '57014' })
    } finally {
      await sql.end({ timeout: 1 })
    }
  })

  it('a held lock survives idle periods longer than the timeout, and a waiter still gets it on release', async () => {
    await using a = await locksOn(server.url, { heartbeatMs: 2_000 })
    await using b = await locksOn(server.url, { heartbeatMs: 2_000 })
    const name = uniqueName('timeouts-lock')
    const lock = await a.locks.acquire(name)
    const lost: unknown[] = []
    a.locks.on('lost', (event) => lost.push(event))
    const waiting = b.locks.acquire(name, { timeoutMs: 10_000 })
    await sleep(1_500)
    expect(lost).toEqual([])
    expect(lock.signal.aborted).toBe(false)
    expect(await b.locks.tryAcquire(name)).toBeUndefined()
    await lock.release()
    const next = await waiting
    await waitFor(() => next.signal.aborted === false)
    await next.release()
  })
})
