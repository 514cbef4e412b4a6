import { ConfigStore } from '@herald/config'
import { installInvalidationTrigger, InvalidatingCache, OutboxRelay, outboxTableSql } from '@herald/lru'
import postgres from 'postgres'
import { startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { collect, startedHerald } from '../support/heralds.js'
import { locksOn } from '../support/locks.js'

// The GRANTs of docs/privileges.md, applied to a role that is not a superuser and owns nothing.
let server: PgServer
const APP = uniqueName('chaos_app')
/** Writes a table through a relay-mode trigger, and has no other Herald grant. */
const WRITER = uniqueName('chaos_writer')
const PASSWORD = 'app'
let appUrl = ''
let writerUrl = ''

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
  // The outbox of relay-mode triggers (herald migrate creates it with the rest).
  await server.sql.unsafe(outboxTableSql('herald'))
  await server.sql.unsafe(`
    create role ${APP} login password '${PASSWORD}';
    grant connect on database postgres to ${APP};
    grant usage on schema herald to ${APP};
    grant select, insert, update on herald.lock_tokens to ${APP};
    grant select, insert on herald.cache_invalidations to ${APP};
    grant select on herald.cache_invalidations_pruned to ${APP};
    grant select, insert, update on herald.config_heads, herald.config_values to ${APP};
    grant select, insert on herald.config_history to ${APP};
    grant select, update, delete on herald.notify_outbox to ${APP};
    create role ${WRITER} login password '${PASSWORD}';
    grant connect on database postgres to ${WRITER};
    grant usage on schema herald to ${WRITER};
    grant insert on herald.notify_outbox to ${WRITER};`)
  const url = new URL(server.url)
  url.username = APP
  url.password = PASSWORD
  appUrl = url.toString()
  url.username = WRITER
  writerUrl = url.toString()
})
afterAll(async () => {
  await server.sql.unsafe(`drop owned by ${APP}; drop role ${APP}`).catch(() => {})
  await server.sql.unsafe(`drop owned by ${WRITER}; drop role ${WRITER}`).catch(() => {})
  await server.close()
})

describe('privileges: a non-superuser role with the documented GRANTs', () => {
  it('writes through a relay-mode trigger with INSERT on the outbox; relays with SELECT, UPDATE, DELETE', async () => {
    const table = uniqueName('relayed')
    const channel = uniqueName('relayed_ch')
    await server.sql.unsafe(`
      create table ${table} (id int primary key, n int not null default 0);
      insert into ${table} values (1, 0);
      grant select, update on ${table} to ${WRITER};`)
    await installInvalidationTrigger(server.sql, {
      table,
      cache: 'relayed',
      channel,
      key: `'row:' || id`,
      relay: true,
    })
    const writer = postgres(writerUrl, { max: 1, onnotice: () => {} })
    const relayClient = postgres(appUrl, { max: 1, onnotice: () => {} })
    try {
      await using herald = await startedHerald({ connection: appUrl, applicationName: 'chaos-priv-relay' })
      const cache = new InvalidatingCache<string>({ herald, name: 'relayed', channel, max: 10 })
      await cache.ready()
      cache.set('row:1', 'old')
      await writer.unsafe(`update ${table} set n = n + 1 where id = 1`)
      await using relay = new OutboxRelay(relayClient)
      const errors: unknown[] = []
      relay.on('error', (error) => errors.push(error))
      await relay.start()
      await waitFor(() => cache.get('row:1') === undefined)
      expect(errors).toEqual([])
      await cache.close()
    } finally {
      await Promise.all([writer.end(), relayClient.end()])
    }
  })

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
