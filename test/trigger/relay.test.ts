import { HeraldError } from '@herald/core'
import { installInvalidationTrigger, listInvalidationTriggers, OutboxRelay } from '@herald/lru'
import { startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import type postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readyCache } from '../support/caches.js'
import { startedHerald } from '../support/heralds.js'

let server: PgServer
let sql: postgres.Sql

beforeAll(async () => {
  server = await startPostgres({ label: 'trigger-relay' })
  // A plain client, as psql or another service would be.
  sql = server.connect({ max: 8 })
})
afterAll(async () => {
  await server.close()
})

/**
 * A table with a relay-mode trigger writing to an outbox of its own schema: test files share
 * a server, and a relay elsewhere must not drain this test's outbox.
 */
async function relayedTable(
  channel: string,
  cache: string,
  rows = 100,
): Promise<{ table: string; schema: string }> {
  const table = uniqueName('items')
  const schema = uniqueName('outbox')
  await sql.unsafe(`create table ${table} (id int primary key, name text not null)`)
  await sql.unsafe(`insert into ${table} select i, 'name ' || i from generate_series(1, ${rows}) as i`)
  await installInvalidationTrigger(sql, { table, cache, channel, key: `'item:' || id`, relay: { schema } })
  return { table, schema }
}

async function outboxRows(schema: string): Promise<number> {
  const [row] = await sql<{ rows: number }[]>`select count(*)::int as rows from ${sql(schema)}.notify_outbox`
  return row?.rows ?? -1
}

describe('relay-mode invalidation triggers', () => {
  it('write an outbox row instead of a NOTIFY; a relay sends it after commit, never on rollback', async () => {
    const channel = uniqueName('relay_ch')
    const name = uniqueName('relay')
    const { table, schema } = await relayedTable(channel, name)
    await using herald = await startedHerald({ connection: server.url })
    const cache = await readyCache<string>(herald, { name, channel })
    const heard: unknown[] = []
    await herald.subscribe(channel, (body) => {
      heard.push(body)
    })
    cache.set('item:1', 'old')
    cache.set('item:2', 'old')

    await expect(
      sql.begin(async (tx) => {
        await tx.unsafe(`update ${table} set name = 'rolled back' where id = 2`)
        throw new Error('roll back')
      }),
    ).rejects.toThrow('roll back')
    await sql.unsafe(`update ${table} set name = 'new' where id = 1`)
    // No relay yet: the write committed, its message waits in the outbox, nothing was sent.
    expect(await outboxRows(schema)).toBe(1)
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(heard).toEqual([])
    expect(cache.get('item:1')).toBe('old')

    await using relay = new OutboxRelay(sql, { schema })
    await relay.start()
    await waitFor(() => cache.get('item:1') === undefined)
    expect(cache.get('item:2')).toBe('old')
    expect(heard).toEqual([{ c: name, k: ['item:1'] }])
    expect(await outboxRows(schema)).toBe(0)
    expect(relay.stats().relayed).toBe(1)
  })

  it('shares the work among relays, each message sent once, and carries chunked keys', async () => {
    const channel = uniqueName('relay_ch')
    const name = uniqueName('relay-many')
    const { table, schema } = await relayedTable(channel, name, 400)
    await using herald = await startedHerald({ connection: server.url })
    const cache = await readyCache<string>(herald, { name, channel, max: 1_000 })
    let messages = 0
    await herald.subscribe(channel, () => {
      messages++
    })
    const relays = Array.from({ length: 3 }, () => new OutboxRelay(sql, { schema, batch: 7 }))
    try {
      await Promise.all(relays.map((relay) => relay.start()))
      for (let id = 1; id <= 400; id++) cache.set(`item:${id}`, 'old')
      // 400 one-row statements from 8 connections at once: 400 outbox rows.
      await Promise.all(
        Array.from({ length: 400 }, (_, i) =>
          sql.unsafe(`update ${table} set name = 'new' where id = ${i + 1}`),
        ),
      )
      await waitFor(() => cache.size === 0, { timeoutMs: 10_000 })
      await waitFor(async () => (await outboxRows(schema)) === 0)
      await new Promise((resolve) => setTimeout(resolve, 100))
      expect(messages).toBe(400)
      expect(relays.reduce((sum, relay) => sum + relay.stats().relayed, 0)).toBe(400)

      // A key over NOTIFY's limit travels as chunk frames, each its own outbox row.
      const long = 'x'.repeat(20_000)
      const big = uniqueName('big')
      await sql.unsafe(`create table ${big} (id int primary key, k text not null)`)
      await installInvalidationTrigger(sql, { table: big, cache: name, channel, key: 'k', relay: { schema } })
      cache.set(long, 'old')
      cache.set('bystander', 'kept')
      await sql.unsafe(`insert into ${big} values (1, '${long}')`)
      await waitFor(() => cache.get(long) === undefined, { timeoutMs: 5_000 })
      // Evicted by its own key, not by a flush.
      expect(cache.get('bystander')).toBe('kept')
    } finally {
      await Promise.all(relays.map((relay) => relay.close()))
    }
  })

  it('is listed with its outbox, and refuses bad options with typed errors', async () => {
    const channel = uniqueName('relay_ch')
    const name = uniqueName('relay-list')
    const { table, schema } = await relayedTable(channel, name)
    const [info] = (await listInvalidationTriggers(sql)).filter((trigger) => trigger.table === table)
    expect(info?.outboxSchema).toBe(schema)
    await expect(
      installInvalidationTrigger(sql, { table, cache: name, key: 'id', relay: 'yes' as unknown as boolean }),
    ).rejects.toBeInstanceOf(HeraldError)
    expect(() => new OutboxRelay(sql, { idleMs: 0 })).toThrow(HeraldError)
    expect(() => new OutboxRelay(sql, { batch: 1.5 })).toThrow(HeraldError)
    expect(() => new OutboxRelay(sql, { schema: 'bad schema' })).toThrow(HeraldError)
    expect(() => new OutboxRelay(sql, { batch: 10_000_000 })).toThrow(HeraldError)
    expect(() => new OutboxRelay(sql, { idleMs: 1e12 })).toThrow(HeraldError)
    expect(() => new OutboxRelay(sql, { migrate: 'no' as unknown as boolean })).toThrow(HeraldError)
  })

  it('refuses at insert a row NOTIFY would refuse, and a relay drops one that got in anyway', async () => {
    const channel = uniqueName('relay_ch')
    const { schema } = await relayedTable(channel, uniqueName('relay-poison'))
    const outbox = `${schema}.notify_outbox`
    await expect(
      sql.unsafe(`insert into ${outbox} (channel, payload) values ('${channel}', repeat('x', 8000))`),
    ).rejects.toThrow(/check constraint/)
    // An outbox made without the checks (by hand, say): the bad row must not block the others.
    await sql.unsafe(`alter table ${outbox} drop constraint notify_outbox_payload_check`)
    await sql.unsafe(`
      insert into ${outbox} (channel, payload) values
        ('${channel}', '{"v":1,"o":"t","k":"x","b":1}'),
        ('${channel}', repeat('x', 8000)),
        ('${channel}', '{"v":1,"o":"t","k":"x","b":2}')`)
    await using herald = await startedHerald({ connection: server.url })
    const heard: unknown[] = []
    await herald.subscribe(channel, (body) => {
      heard.push(body)
    })
    await using relay = new OutboxRelay(sql, { schema })
    await relay.start()
    await waitFor(() => heard.length === 2)
    expect(heard).toEqual([1, 2])
    expect(await outboxRows(schema)).toBe(0)
  })
})
