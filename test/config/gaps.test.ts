import { once, startPostgres, waitFor, type PgServer } from '@herald/testing'
import type postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cutListener, SLOW_RECONNECT } from '../support/faults.js'
import { startedHerald } from '../support/heralds.js'
import { namespace, record, startedConfig } from './support.js'

// Kills listener connections: owns its server.
let server: PgServer
let sql: postgres.Sql

beforeAll(async () => {
  server = await startPostgres({ faults: true, label: 'config-gaps' })
  sql = server.connect({ max: 2, connection: { application_name: 'test-writer' } })
})
afterAll(async () => {
  await server.close()
})

describe('gaps', () => {
  it('delivers every change made while the listener was down, in order, after it reconnects', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url, ...SLOW_RECONNECT })
    const ns = namespace()
    const atA = await startedConfig(a, ns)
    const atB = await startedConfig(b, ns) // pollMs: 0: only the reconnect can bring them
    const seen = record(atB)
    await cutListener(server, b)
    await atA.set('rateLimit', 1)
    await sql.begin(async (tx) => {
      await atA.set('banner', 'during the gap', { tx })
    })
    await atA.set('rateLimit', 3)
    expect(b.connected).toBe(false)
    expect(atB.get('rateLimit')).toBe(100)
    await once(b, 'reconnected')
    await waitFor(() => atB.version === 3)
    expect(seen.changes).toEqual([
      { key: 'rateLimit', value: 1, previous: 100, version: 1, reason: 'set' },
      { key: 'banner', value: 'during the gap', previous: undefined, version: 2, reason: 'set' },
      { key: 'rateLimit', value: 3, previous: 1, version: 3, reason: 'set' },
    ])
    expect(atB.get('rateLimit')).toBe(3)
    expect(atB.get('banner')).toBe('during the gap')
    expect(seen.errors).toEqual([])
  })

  it('catches up after every connection was terminated, writers included', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url, ...SLOW_RECONNECT })
    const ns = namespace()
    const atA = await startedConfig(a, ns)
    const atB = await startedConfig(b, ns)
    const seen = record(atB)
    const reconnected = once(b, 'reconnected')
    await server.terminate()
    await waitFor(() => !b.connected)
    // The publisher pool reconnects on its next query.
    await atA.set('rateLimit', 10)
    await atA.set('rateLimit', 20)
    await reconnected
    await waitFor(() => atB.get('rateLimit') === 20)
    expect(seen.changes.map((change) => [change.value, change.version])).toEqual([
      [10, 1],
      [20, 2],
    ])
  })
})
