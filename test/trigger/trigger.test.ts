import { once, startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import {
  installInvalidationTrigger,
  invalidationTriggerSql,
  listInvalidationTriggers,
  removeInvalidationTrigger,
  type InvalidatingCache,
} from '@herald/lru'
import type { Herald } from '@herald/core'
import type postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readyCache } from '../support/caches.js'
import { startedHerald } from '../support/heralds.js'

let server: PgServer
let sql: postgres.Sql

beforeAll(async () => {
  server = await startPostgres({ label: 'trigger' })
  // A plain client, as psql or another service would be: no Herald anywhere near it.
  sql = server.connect({ max: 2 })
})
afterAll(async () => {
  await server.close()
})

const ROWS = 10_000

/** A table of `rows` items (id, name, org = id % 10) with a unique name. */
async function itemsTable(rows: number): Promise<string> {
  const table = uniqueName('items')
  await sql.unsafe(`create table ${table} (id int primary key, name text not null, org int not null)`)
  if (rows > 0) {
    await sql.unsafe(
      `insert into ${table} select i, 'name ' || i, i % 10 from generate_series(1, ${rows}) as i`,
    )
  }
  return table
}

/** Instances, each a Herald with a cache of the same name on the test's own channel. */
async function instances(count: number, name: string, channel: string, max = 3 * ROWS) {
  const heralds: Herald[] = []
  const caches: InvalidatingCache<string>[] = []
  for (let i = 0; i < count; i++) {
    const herald = await startedHerald({ connection: server.url })
    heralds.push(herald)
    caches.push(await readyCache<string>(herald, { name, channel, max }))
  }
  return {
    heralds,
    caches,
    async [Symbol.asyncDispose]() {
      await Promise.all(heralds.map((herald) => herald.close()))
    },
  }
}

function itemKeys(from: number, to: number): string[] {
  return Array.from({ length: to - from + 1 }, (_, i) => `item:${from + i}`)
}

function cachedItems(cache: InvalidatingCache<string>): number {
  return cache.entries().filter(([key]) => key.startsWith('item:')).length
}

describe('installInvalidationTrigger', () => {
  it("evicts every key of a plain client's 10,000-row UPDATE on every instance", async () => {
    const table = await itemsTable(ROWS)
    const cache = uniqueName('items')
    const channel = uniqueName('inv')
    await installInvalidationTrigger(sql, { table, cache, channel, key: "'item:' || id" })
    await using cluster = await instances(3, cache, channel)
    for (const instance of cluster.caches) {
      for (const key of itemKeys(1, ROWS)) instance.set(key, 'old')
      instance.set('unrelated', 'kept')
    }
    const evicted = cluster.caches.map(() => 0)
    cluster.caches.forEach((instance, index) =>
      instance.on('evict', ({ reason }) => {
        if (reason === 'invalidate') evicted[index]!++
      }),
    )

    await sql.unsafe(`update ${table} set name = name || '!'`)

    await waitFor(() => cluster.caches.every((instance) => cachedItems(instance) === 0), {
      timeoutMs: 20_000,
      message: 'every item key evicted on every instance',
    })
    expect(evicted).toEqual([ROWS, ROWS, ROWS])
    for (const instance of cluster.caches) {
      expect(instance.get('unrelated')).toBe('kept')
      expect(instance.stats().flushes).toBe(0)
    }
    // 10,000 keys do not fit one NOTIFY: several complete envelopes, every one decoded.
    const herald = cluster.heralds[0]!
    expect(herald.stats().notifications).toBeGreaterThan(1)
    expect(herald.stats().notifications).toBeLessThan(40)
    expect(herald.stats().invalid).toBe(0)
  })

  it('evicts the keys of inserted and deleted rows, and of the old and new rows of an update', async () => {
    const table = await itemsTable(100)
    const cache = uniqueName('items')
    const channel = uniqueName('inv')
    await installInvalidationTrigger(sql, { table, cache, channel, key: "'item:' || id" })
    await using cluster = await instances(2, cache, channel)
    const [, other] = cluster.caches
    const fill = (keys: string[]) => keys.forEach((key) => other!.set(key, 'stale'))

    fill([...itemKeys(90, 100), ...itemKeys(201, 250)])
    await sql.unsafe(`insert into ${table} select i, 'new', 0 from generate_series(201, 250) as i`)
    await waitFor(() => itemKeys(201, 250).every((key) => other!.get(key) === undefined))
    expect(other!.get('item:90')).toBe('stale')

    await sql.unsafe(`delete from ${table} where id between 90 and 100`)
    await waitFor(() => itemKeys(90, 100).every((key) => other!.get(key) === undefined))

    fill(['item:5', 'item:1005'])
    await sql.unsafe(`update ${table} set id = 1005 where id = 5`)
    await waitFor(() => other!.get('item:5') === undefined && other!.get('item:1005') === undefined)

    // A statement that touches no row sends nothing.
    const before = cluster.heralds[1]!.stats().notifications
    fill(['item:1'])
    await sql.unsafe(`update ${table} set name = 'x' where id < 0`)
    await sql.unsafe(`update ${table} set name = 'marker' where id = 2`)
    await waitFor(() => cluster.heralds[1]!.stats().notifications === before + 1)
    expect(other!.get('item:1')).toBe('stale')
  })

  it('evicts nothing elsewhere when the bulk update rolls back', async () => {
    const table = await itemsTable(ROWS)
    const cache = uniqueName('items')
    const channel = uniqueName('inv')
    await installInvalidationTrigger(sql, { table, cache, channel, key: "'item:' || id" })
    await using cluster = await instances(2, cache, channel)
    const [, other] = cluster.caches
    for (const key of itemKeys(1, ROWS)) other!.set(key, 'current')

    await expect(
      sql.begin(async (tx) => {
        await tx.unsafe(`update ${table} set name = name || '?'`)
        throw new Error('roll back')
      }),
    ).rejects.toThrow('roll back')
    // Notifications arrive in commit order: once this later commit's has, a NOTIFY of the
    // rolled-back update would have too.
    await sql.unsafe(`update ${table} set name = 'marker' where id = 1`)
    await waitFor(() => other!.get('item:1') === undefined)
    expect(cachedItems(other!)).toBe(ROWS - 1)
    expect(other!.stats().invalidationsReceived).toBe(1)
  })

  it('evicts tags and several keys per row, skipping null keys', async () => {
    const table = await itemsTable(50)
    await sql.unsafe(`alter table ${table} add column slug text`)
    const cache = uniqueName('items')
    const channel = uniqueName('inv')
    await installInvalidationTrigger(sql, {
      table,
      cache,
      channel,
      key: ["'item:' || id", "'slug:' || slug"],
      tags: "'org:' || org",
    })
    await using cluster = await instances(2, cache, channel)
    const [, other] = cluster.caches
    other!.set('org-7-report', 'stale', { tags: ['org:7'] })
    other!.set('org-8-report', 'fresh', { tags: ['org:8'] })
    other!.set('slug:seventeen', 'stale')
    other!.set('item:17', 'stale')
    await sql.unsafe(`update ${table} set slug = 'seventeen' where id = 17`)
    await waitFor(
      () =>
        other!.get('org-7-report') === undefined &&
        other!.get('slug:seventeen') === undefined &&
        other!.get('item:17') === undefined,
    )
    expect(other!.get('org-8-report')).toBe('fresh')
  })

  it('flushes on TRUNCATE and above flushAboveKeys, never dropping keys', async () => {
    const table = await itemsTable(300)
    const cache = uniqueName('items')
    const channel = uniqueName('inv')
    await installInvalidationTrigger(sql, {
      table,
      cache,
      channel,
      key: "'item:' || id",
      flushAboveKeys: 200,
    })
    await using cluster = await instances(2, cache, channel)
    const [, other] = cluster.caches

    other!.set('anything', 'v')
    await sql.unsafe(`update ${table} set name = 'x' where id <= 250`)
    await waitFor(() => other!.stats().flushes === 1)
    expect(other!.get('anything')).toBeUndefined()

    other!.set('item:1', 'v')
    other!.set('anything', 'v')
    await sql.unsafe(`update ${table} set name = 'y' where id <= 150`)
    await waitFor(() => other!.get('item:1') === undefined)
    expect(other!.get('anything')).toBe('v')
    expect(other!.stats().flushes).toBe(1)

    await sql.unsafe(`truncate ${table}`)
    await waitFor(() => other!.stats().flushes === 2)
    expect(other!.get('anything')).toBeUndefined()
  })

  it('sends a key too large for one NOTIFY as chunk frames, split between characters', async () => {
    const table = await itemsTable(3)
    const cache = uniqueName('items')
    const channel = uniqueName('inv')
    // 6,000 two-byte characters: 12,000 bytes for one key.
    await installInvalidationTrigger(sql, { table, cache, channel, key: "repeat('é', 6000) || id" })
    await using cluster = await instances(2, cache, channel)
    const [, other] = cluster.caches
    const big = (id: number) => `${'é'.repeat(6000)}${id}`
    other!.set(big(1), 'v')
    other!.set(big(2), 'v')
    other!.set(big(3), 'v')
    await sql.unsafe(`update ${table} set name = 'x' where id <= 2`)
    await waitFor(() => other!.get(big(1)) === undefined && other!.get(big(2)) === undefined)
    expect(other!.get(big(3))).toBe('v')
    expect(cluster.heralds[1]!.stats().invalid).toBe(0)
    expect(cluster.heralds[1]!.stats().notifications).toBeGreaterThanOrEqual(4)
  })

  it.each([
    ['two-byte', 'é', 8_000],
    ['three-byte', '中', 9_000],
    ['four-byte', '🎉', 5_000],
  ])('splits a long key of %s characters into frames that each fit a NOTIFY', async (_, char, count) => {
    const table = await itemsTable(1)
    const cache = uniqueName('items')
    const channel = uniqueName('inv')
    await installInvalidationTrigger(sql, { table, cache, channel, key: `repeat('${char}', ${count}) || id` })
    await using cluster = await instances(2, cache, channel)
    const [, other] = cluster.caches
    const key = `${char.repeat(count)}1`
    other!.set(key, 'v')
    await sql.unsafe(`update ${table} set name = 'x' where id = 1`)
    await waitFor(() => other!.get(key) === undefined)
    expect(cluster.heralds[1]!.stats().invalid).toBe(0)
  })

  it('quotes identifiers: a schema, table and cache name that need it', async () => {
    const schema = `My Schema ${uniqueName('s')}`
    const table = `Order "Items" ${uniqueName('t')}`
    const q = (name: string) => `"${name.replaceAll('"', '""')}"`
    await sql.unsafe(`create schema ${q(schema)}`)
    await sql.unsafe(`create table ${q(schema)}.${q(table)} ("Id" int primary key, note text)`)
    await sql.unsafe(`insert into ${q(schema)}.${q(table)} values (1, 'a'), (2, 'b')`)
    const cache = `it's a "cache" ${uniqueName('c')}`
    const channel = uniqueName('inv')
    const installed = await installInvalidationTrigger(sql, {
      schema,
      table,
      cache,
      channel,
      key: `'order:' || ${q(table)}."Id"`,
    })
    expect(installed.triggers).toHaveLength(4)
    await using cluster = await instances(2, cache, channel)
    const [, other] = cluster.caches
    other!.set('order:2', 'stale')
    await sql.unsafe(`update ${q(schema)}.${q(table)} set note = 'c' where "Id" = 2`)
    await waitFor(() => other!.get('order:2') === undefined)
    const listed = await listInvalidationTriggers(sql, { schema })
    expect(listed).toMatchObject([{ schema, table, cache, channel }])
    expect(await removeInvalidationTrigger(sql, { schema, table, cache })).toBe(true)
  })

  it('fails at install, with a clear error and nothing installed, for a bad expression', async () => {
    const table = await itemsTable(1)
    const cache = uniqueName('items')
    const bad = async (key: string, pattern: RegExp) => {
      const error = await installInvalidationTrigger(sql, { table, cache, key }).then(
        () => undefined,
        (caught: unknown) => caught,
      )
      expect(error).toMatchObject({ name: 'HeraldError', code: 'INVALID_OPTION' })
      expect((error as Error).message).toMatch(pattern)
    }
    await bad(
      "'item:' || idd",
      /key expression "'item:' \|\| idd" is not valid over "public"\."items_\w+": column "idd" does not exist/,
    )
    await bad("'item:' ||", /syntax error/)
    await bad('ctid::text', /column "ctid" does not exist/)
    await bad('count(*)', /aggregate functions are not allowed/)
    await bad('row_number() over ()', /window functions are not allowed/)
    await bad('array[id]', /is of type integer\[\]/)
    await bad('1); drop table items_x; select (1', /not valid/)
    await expect(
      installInvalidationTrigger(sql, { table, cache, key: 'id', tags: 'nope' }),
    ).rejects.toMatchObject({
      code: 'INVALID_OPTION',
      message: expect.stringMatching(/tag expression "nope"/) as unknown,
    })
    await expect(
      installInvalidationTrigger(sql, { table: uniqueName('missing'), cache, key: 'id' }),
    ).rejects.toMatchObject({
      code: 'INVALID_OPTION',
      message: expect.stringMatching(/does not exist/) as unknown,
    })
    expect(() => invalidationTriggerSql({ table, cache, key: 'id', channel: 'bad channel' })).toThrow(
      expect.objectContaining({ code: 'INVALID_CHANNEL' }),
    )
    expect(() => invalidationTriggerSql({ table, cache, key: [] })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTION' }),
    )
    expect(await listInvalidationTriggers(sql, { table })).toEqual([])
    const [row] = await sql<{ count: number }[]>`
      select count(*)::int as count from pg_trigger where tgrelid = ${table}::regclass`
    expect(row?.count).toBe(0)
  })

  it('replaces on a second install, and removes: writes then evict nothing', async () => {
    const table = await itemsTable(10)
    const cache = uniqueName('items')
    const channel = uniqueName('inv')
    await installInvalidationTrigger(sql, { table, cache, channel, key: "'wrong:' || id" })
    await installInvalidationTrigger(sql, { table, cache, channel, key: "'item:' || id" })
    expect(await listInvalidationTriggers(sql, { table })).toMatchObject([
      { table, cache, channel, key: ["'item:' || id"], tags: [], logSchema: undefined },
    ])
    await using cluster = await instances(2, cache, channel)
    const [sender, other] = cluster.caches
    other!.set('item:1', 'stale')
    await sql.unsafe(`update ${table} set name = 'x' where id = 1`)
    await waitFor(() => other!.get('item:1') === undefined)
    expect(other!.stats().invalidationsReceived).toBe(1)

    expect(await removeInvalidationTrigger(sql, { table, cache })).toBe(true)
    expect(await removeInvalidationTrigger(sql, { table, cache })).toBe(false)
    expect(await listInvalidationTriggers(sql, { table })).toEqual([])
    other!.set('item:2', 'cached')
    await sql.unsafe(`update ${table} set name = 'y'`)
    // Published after the update committed: once it has arrived, a trigger message would have.
    await sender!.invalidate('marker')
    await waitFor(() => other!.stats().invalidationsReceived === 2)
    expect(other!.get('item:2')).toBe('cached')
  })

  it('durable: logs trigger invalidations, which a cache that missed the NOTIFY replays', async () => {
    const table = await itemsTable(1_000)
    const cache = uniqueName('items')
    const schema = uniqueName('herald')
    const channel = uniqueName('inv')
    await installInvalidationTrigger(sql, {
      table,
      cache,
      channel,
      key: "'item:' || id",
      durable: { schema },
    })
    await using herald = await startedHerald({ connection: server.url })
    // Listening on another channel, this cache never hears the trigger's NOTIFY: only its
    // poll of the log can evict.
    const deaf = await readyCache<string>(herald, {
      name: cache,
      channel: uniqueName('elsewhere'),
      durable: { schema, pollMs: 100 },
    })
    for (const key of itemKeys(1, 1_000)) deaf.set(key, 'old')
    deaf.set('unrelated', 'kept')
    await sql.unsafe(`update ${table} set name = 'x' where id <= 600`)
    await waitFor(() => itemKeys(1, 600).every((key) => deaf.get(key) === undefined))
    expect(cachedItems(deaf)).toBe(400)
    expect(deaf.get('unrelated')).toBe('kept')
    expect(deaf.stats()).toMatchObject({ flushes: 0 })
    expect(deaf.stats().replayedRows).toBeGreaterThanOrEqual(1)
    const rows = await sql<{ keys: number }[]>`
      select coalesce(sum(jsonb_array_length(keys)), 0)::int as keys
      from ${sql(schema)}.cache_invalidations where cache = ${cache}`
    expect(rows[0]?.keys).toBe(600)
  })

  it('durable: a cache whose listener was down replays the trigger rows instead of flushing', async () => {
    const table = await itemsTable(100)
    const cache = uniqueName('items')
    const schema = uniqueName('herald')
    const channel = uniqueName('inv')
    await installInvalidationTrigger(sql, {
      table,
      cache,
      channel,
      key: "'item:' || id",
      durable: { schema },
    })
    const applicationName = uniqueName('gap')
    await using herald = await startedHerald({
      connection: server.url,
      applicationName,
      // A gap long enough to write in.
      reconnect: { minDelayMs: 1_500, maxDelayMs: 1_500 },
    })
    const durableCache = await readyCache<string>(herald, { name: cache, channel, durable: { schema } })
    for (const key of itemKeys(1, 100)) durableCache.set(key, 'old')
    const disconnected = once(herald, 'disconnected')
    const replayed = once(durableCache, 'replay')
    await server.terminate({ applicationName: `${applicationName}-listener` })
    await disconnected
    await sql.unsafe(`update ${table} set name = 'x' where id <= 10`)
    expect(herald.connected).toBe(false)
    expect(await replayed).toMatchObject({ rows: 1 })
    await waitFor(() => durableCache.stats().live)
    expect(itemKeys(1, 10).map((key) => durableCache.get(key))).toEqual(itemKeys(1, 10).map(() => undefined))
    expect(durableCache.get('item:11')).toBe('old')
    expect(durableCache.stats()).toMatchObject({ flushes: 0 })
  })
})
