import { ConfigStore } from '@herald/config'
import { InvalidatingCache } from '@herald/lru'
import { startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { collect, errorsOf, startedHerald } from '../support/heralds.js'
import { locksOn } from '../support/locks.js'
import { failOnUnhandledRejection, LONG, report } from './support.js'

let server: PgServer
const LOW = uniqueName('chaos_low')
const PASSWORD = 'low-privilege'

beforeAll(async () => {
  server = await startPostgres({ faults: true, label: 'chaos-hostile' })
  // CONNECT and LOGIN only: no table, no schema, nothing but pg_notify (granted to PUBLIC).
  await server.sql.unsafe(`create role ${LOW} login password '${PASSWORD}'`)
  await server.sql.unsafe(`grant connect on database postgres to ${LOW}`)
})
afterAll(async () => {
  await server.close()
})
failOnUnhandledRejection()

const garbage = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.string({ maxLength: 50 }).map((rest) => `~${rest}`),
  fc
    .tuple(
      fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/),
      fc.nat({ max: 99 }),
      fc.nat({ max: 99 }),
      fc.string({ maxLength: 40 }),
    )
    .map(([id, index, count, body]) => `~${id}:${index}:${count}\n${body}`),
  fc.json(),
  fc
    .record({
      v: fc.oneof(fc.constant(1), fc.anything()),
      o: fc.anything(),
      k: fc.anything(),
      b: fc.anything(),
    })
    .map((record) => JSON.stringify(record) ?? 'x'),
)

describe('chaos: hostile input from a low-privilege role', () => {
  it(
    'forged NOTIFYs on every Herald channel crash nothing and change no state',
    { timeout: 60_000 },
    async () => {
      await using a = await startedHerald({ connection: server.url, applicationName: 'chaos-hostile-a' })
      await using b = await startedHerald({ connection: server.url, applicationName: 'chaos-hostile-b' })
      const errors = errorsOf(b)
      const name = uniqueName('cache')
      const namespace = uniqueName('ns')
      const cache = new InvalidatingCache<string>({ herald: b, name, max: 100 })
      const config = new ConfigStore({
        herald: b,
        namespace,
        pollMs: 0,
        schema: { rateLimit: z.number().default(100) },
      })
      const configA = new ConfigStore({
        herald: a,
        namespace,
        pollMs: 0,
        schema: { rateLimit: z.number().default(100) },
      })
      await using holder = await locksOn(server.url, { applicationName: 'chaos-hostile-holder' })
      await using rival = await locksOn(server.url, { applicationName: 'chaos-hostile-rival', sweepMs: 200 })
      try {
        await Promise.all([cache.ready(), config.start(), configA.start()])
        await configA.set('rateLimit', 7)
        await waitFor(() => config.get('rateLimit') === 7)
        const plain = uniqueName('plain')
        const received = await collect(b, plain)
        const key = uniqueName('key')
        cache.set(key, 'cached')
        const lockName = uniqueName('lock')
        const lock = await holder.locks.acquire(lockName)
        const rivalAttempt = rival.locks.acquire(lockName, { timeoutMs: 2_000 }).then(
          (held) => held,
          (error: { code?: string }) => error.code,
        )
        const low = server.connect({
          max: 1,
          username: LOW,
          password: PASSWORD,
          connection: { application_name: 'chaos-hostile-low' },
        })
        const channels = ['cache_invalidation', 'lock_release', 'herald_config', plain]
        const samples = fc.sample(garbage, LONG ? 2_000 : 200)
        // Valid-looking messages with hostile intent: a config hint for a version that does
        // not exist, a release for the held lock, a flush for another cache.
        const forged = [
          JSON.stringify({ v: 1, o: 'evil', k: 'config', b: { n: namespace, v: 999 } }),
          JSON.stringify({ v: 1, o: 'evil', k: 'config', b: { n: namespace, v: 'NaN' } }),
          JSON.stringify({ v: 1, o: 'evil', k: 'release', b: { k: lockName } }),
          JSON.stringify({ v: 1, o: 'evil', k: 'invalidate', b: { c: 'other', f: 1 } }),
          JSON.stringify({ v: 1, o: 'evil', k: 'invalidate', b: { c: name, k: 'not-an-array' } }),
        ]
        const startedAt = Date.now()
        let sent = 0
        for (const payload of [...forged, ...samples]) {
          for (const channel of channels) {
            // NOTIFY refuses some payloads itself (too long, invalid UTF-8 after encoding): fine.
            await low`select pg_notify(${channel}, ${payload})`.then(
              () => sent++,
              () => {},
            )
          }
        }
        // Every forged message is handled before a real one published after them.
        await a.publish(plain, 'real')
        await waitFor(() => received.payloads().includes('real'), { timeoutMs: 10_000 })
        const handledMs = Date.now() - startedAt
        expect(b.connected).toBe(true)
        expect(b.stats().reconnects).toBe(0)
        // The invalid ones were reported, not thrown.
        expect(errors.every((error) => error.code === 'PAYLOAD_INVALID')).toBe(true)
        expect(errors.length).toBeGreaterThan(0)
        // No forged config hint changes a value.
        expect(config.get('rateLimit')).toBe(7)
        expect(config.version).toBe(1)
        // A forged release never lets a second holder in.
        expect(await rivalAttempt).toBe('TIMEOUT')
        expect(lock.held).toBe(true)
        // The cached entry survives (a well-formed forged invalidation of it would be allowed; none was sent).
        expect(cache.get(key)).toBe('cached')
        // And state still changes for real messages.
        await configA.set('rateLimit', 8)
        await waitFor(() => config.get('rateLimit') === 8)
        await lock.release()
        await low.end()
        report('hostile-notify', {
          fault: `forged NOTIFYs from a CONNECT-only role on ${channels.length} channels (random strings, forged chunk headers, wrong-typed envelopes, forged hints)`,
          recoveryMs: null,
          measured: `${sent} notifications handled in ${handledMs} ms, no reconnect`,
          invariant:
            'listener stays connected; config unchanged; no second lock holder; cache entry kept; errors only PAYLOAD_INVALID events',
          result: 'held',
          details: { sent, errorEvents: errors.length, handledMs },
        })
      } finally {
        await Promise.all([cache.close(), config.close(), configA.close()])
      }
    },
  )
})
