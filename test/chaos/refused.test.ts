import type { ReconnectedEvent } from '@herald/core'
import { once, startPostgres, uniqueName, type PgServer } from '@herald/testing'
import type postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { errorsOf } from '../support/heralds.js'
import { activeTimers, expectNoTimers, failOnUnhandledRejection, probeRecovery, report } from './support.js'
import { finishWorkload, startWorkload } from './workload.js'

// A server with few connection slots, none reserved, so the test can fill every one.
let server: PgServer
const MAX_CONNECTIONS = 20
let leakedTimers = -1

beforeAll(async () => {
  server = await startPostgres({
    faults: true,
    label: 'chaos-refused',
    postgresFlags: [
      '-c',
      `max_connections=${MAX_CONNECTIONS}`,
      '-c',
      'superuser_reserved_connections=0',
      '-c',
      'reserved_connections=0',
    ],
  })
})
afterAll(async () => {
  await server.close()
})
failOnUnhandledRejection()

/** Opens single connections until the server refuses one (SQLSTATE 53300). */
async function exhaust(): Promise<postgres.Sql[]> {
  const hogs: postgres.Sql[] = []
  for (let i = 0; i < MAX_CONNECTIONS + 5; i++) {
    // postgres.js 4 takes "too many clients" (53300) for a passing state and retries the
    // connection until connect_timeout (30 s by default): one second is enough to tell.
    const hog = server.connect({ max: 1, connect_timeout: 1, connection: { application_name: 'chaos-hog' } })
    try {
      await hog`select 1`
      hogs.push(hog)
    } catch (error) {
      await hog.end({ timeout: 0 })
      expect((error as { code?: string }).code).toBe('53300')
      return hogs
    }
  }
  throw new Error('the server never refused a connection')
}

describe('chaos: the server refuses connections', () => {
  it('max_connections reached while the listener reconnects, then freed', { timeout: 60_000 }, async () => {
    const timers = activeTimers()
    const prefix = 'chaos-refused'
    // The admin client's connections exist before the slots run out.
    await Promise.all([1, 2].map(() => server.sql`select pg_sleep(0.05)`))
    // A first reconnect attempt after 250-500 ms: time enough to take the slot it freed.
    const load = await startWorkload(server, prefix, { reconnect: { minDelayMs: 500, maxDelayMs: 1_000 } })
    const errors = errorsOf(load.b)
    let hogs: postgres.Sql[] = []
    try {
      await load.progress()
      hogs = await exhaust()
      const disconnected = once(load.b, 'disconnected')
      await server.terminate(load.b.stats().backendPid)
      await disconnected
      // The slot the listener had is free again: take it too, so every reconnect is refused.
      hogs.push(...(await exhaust()))
      const refusedMs = 1_500
      await new Promise((resolve) => setTimeout(resolve, refusedMs))
      expect(load.b.connected).toBe(false)
      const reconnected = once<ReconnectedEvent>(load.b, 'reconnected', { timeoutMs: 20_000 })
      const freedAt = Date.now()
      await Promise.all(hogs.splice(0).map((hog) => hog.end({ timeout: 0 })))
      const event = await reconnected
      const recoveryMs = await probeRecovery(load.a, load.b, uniqueName('probe'), freedAt)
      const invariant = await finishWorkload(load, server, prefix)
      // Checked by the next case, which documents the leak it finds.
      leakedTimers = await expectNoTimers(timers).then(
        () => 0,
        () => activeTimers() - timers,
      )
      report('max-connections', {
        fault: `server refusing connections (max_connections=${MAX_CONNECTIONS} reached) for ${refusedMs} ms while the listener reconnects`,
        recoveryMs,
        measured: 'slots freed → first message delivered after it',
        invariant:
          'listener keeps retrying, no stale cache entry, no missed config version, no leaked connection (a timer leaks: see the it.fails case)',
        result: 'held',
        details: {
          leakedTimers,
          downtimeMs: event.downtimeMs,
          errorCodes: [...new Set(errors.map((error) => error.code))],
          ...invariant,
        },
      })
    } finally {
      await Promise.all(hogs.map((hog) => hog.end({ timeout: 0 })))
      await load.close()
    }
  })

  // BUG (unresolved source): after the case above, postgres.js `max_lifetime` timers
  // (connection.js:371 `lifeTimer.start()` in `connected()`, 30-60 min, not unref'd) stay
  // armed once every Herald, cache, config store and client is closed: one per connection
  // the server accepted at TCP level and then refused with 53300. A bare client ended after a
  // refusal leaves none, so some pool (a Herald publisher pool, a guess) does not end a
  // connection that was refused. It keeps the process alive up to an hour after close().
  it.fails('leaves no timer behind after connections were refused', () => {
    expect(leakedTimers).toBe(0)
  })
})
