import { ConfigStore } from '@herald/config'
import { InvalidatingCache } from '@herald/lru'
import { startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { collect, startedHerald } from '../support/heralds.js'
import { locksOn } from '../support/locks.js'

// The GRANTs of docs/privileges.md, applied to a role that is not a superuser and owns nothing.
let server: PgServer
const APP = uniqueName('chaos_app')
const PASSWORD = 'app'
let appUrl = ''

beforeAll(async () => {
  server = await startPostgres({ label: 'chaos-privileges' })
  // The tables, created once by an owner (migrate / first run as a privileged role).
  await using owner = await locksOn(server.url, { applicationName: 'chaos-priv-owner' })
  await (await owner.locks.acquire(uniqueName('warm'))).release()
  const cache = new InvalidatingCache<string>({ herald: owner.herald, name: 'warm', max: 10, durable: true })
  await cache.ready()
  await cache.invalidate('warm')
  await cache.close()
  const config = new ConfigStore({
    herald: owner.herald,
    namespace: uniqueName('warm'),
    schema: { x: z.number().optional() },
  })
  await config.start()
  await config.close()
  await server.sql.unsafe(`
    create role ${APP} login password '${PASSWORD}';
    grant connect on database postgres to ${APP};
    grant usage on schema herald to ${APP};
    grant select, insert, update on herald.lock_tokens to ${APP};
    grant select, insert on herald.cache_invalidations to ${APP};
    grant select on herald.cache_invalidations_pruned to ${APP};
    grant select, insert, update on herald.config_heads, herald.config_values to ${APP};
    grant select, insert on herald.config_history to ${APP};`)
  const url = new URL(server.url)
  url.username = APP
  url.password = PASSWORD
  appUrl = url.toString()
})
afterAll(async () => {
  await server.sql.unsafe(`drop owned by ${APP}; drop role ${APP}`).catch(() => {})
  await server.close()
})

describe('privileges: a non-superuser role with the documented GRANTs', () => {
  it('listens, publishes, invalidates (durable), locks and writes config', { timeout: 30_000 }, async () => {
    await using a = await startedHerald({ connection: appUrl, applicationName: 'chaos-priv-a' })
    await using b = await startedHerald({ connection: appUrl, applicationName: 'chaos-priv-b' })
    const [role] = await a.sql<
      { superuser: boolean }[]
    >`select rolsuper as superuser from pg_roles where rolname = current_user`
    expect(role?.superuser).toBe(false)
    // Listener and publisher: CONNECT only.
    const channel = uniqueName('priv')
    const received = await collect(b, channel)
    await a.publish(channel, 'hello')
    await received.count(1)
    // Cache log writer and reader (durable mode).
    const name = uniqueName('cache')
    const atA = new InvalidatingCache<string>({ herald: a, name, max: 10, durable: true })
    const atB = new InvalidatingCache<string>({ herald: b, name, max: 10, durable: true })
    // Lock holder and config writer.
    await using locks = await locksOn(appUrl, { applicationName: 'chaos-priv-locks' })
    const namespace = uniqueName('ns')
    const config = new ConfigStore({ herald: a, namespace, schema: { rateLimit: z.number().default(100) } })
    const reader = new ConfigStore({
      herald: b,
      namespace,
      pollMs: 0,
      schema: { rateLimit: z.number().default(100) },
    })
    try {
      await Promise.all([atA.ready(), atB.ready(), config.start(), reader.start()])
      atB.set('k', 'old')
      await atA.invalidate('k')
      await waitFor(() => atB.get('k') === undefined)
      const lock = await locks.locks.acquire(uniqueName('lock'))
      expect(lock.token).toBeGreaterThan(0n)
      await lock.release()
      await config.set('rateLimit', 5)
      await waitFor(() => reader.get('rateLimit') === 5)
    } finally {
      await Promise.all([atA.close(), atB.close(), config.close(), reader.close()])
    }
  })
})
