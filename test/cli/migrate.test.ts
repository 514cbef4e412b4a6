import { migrate, migrationSql, quoteIdentifier, type MigrationPart } from '@herald/core'
import { heraldParts } from 'herald'
import { startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import type postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

let server: PgServer
let sql: postgres.Sql

beforeAll(async () => {
  server = await startPostgres({ label: 'migrate' })
  sql = server.connect({ max: 2 })
})
afterAll(async () => {
  await server.close()
})

const MIGRATION_LOCK = 0x6865_7261_6c64_0000n

function widgets(version: number): MigrationPart {
  return {
    id: 'widgets',
    version,
    sql: (schema) => {
      const s = quoteIdentifier(schema)
      return `
create schema if not exists ${s};
create table if not exists ${s}.widgets (id int primary key);
${version >= 2 ? `alter table ${s}.widgets add column if not exists name text;` : ''}`
    },
  }
}

async function columns(schema: string, table: string): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    select column_name as name from information_schema.columns
    where table_schema = ${schema} and table_name = ${table} order by ordinal_position`
  return rows.map((row) => row.name)
}

describe('migrate()', () => {
  it('creates every part once, records versions, and is idempotent', async () => {
    const schema = uniqueName('herald')
    const first = await migrate(sql, { schema, parts: heraldParts })
    expect(first).toEqual([
      { id: 'lru-log', version: 2, previous: undefined, status: 'applied' },
      { id: 'lock-tokens', version: 1, previous: undefined, status: 'applied' },
      { id: 'config', version: 1, previous: undefined, status: 'applied' },
    ])
    const second = await migrate(sql, { schema, parts: heraldParts })
    expect(second.map((outcome) => outcome.status)).toEqual(heraldParts.map(() => 'current'))
    expect(await columns(schema, 'lock_tokens')).toEqual(['name', 'token', 'acquired_at'])
  })

  it('is safe when ten instances start at once, each on its own connection', async () => {
    const schema = uniqueName('herald')
    const clients = Array.from({ length: 10 }, () => server.connect({ max: 1 }))
    const outcomes = await Promise.all(
      clients.map((client) => migrate(client, { schema, parts: heraldParts })),
    )
    await Promise.all(clients.map((client) => client.end()))
    expect(
      outcomes.flat().every((outcome) => outcome.status === 'applied' || outcome.status === 'current'),
    ).toBe(true)
    const rows = await sql<{ part: string; version: number }[]>`
      select part, version from ${sql(schema)}.migrations order by part`
    expect(rows).toEqual([
      { part: 'config', version: 1 },
      { part: 'lock-tokens', version: 1 },
      { part: 'lru-log', version: 2 },
    ])
  })

  it('upgrades a part to a new version, and leaves a newer database alone', async () => {
    const schema = uniqueName('herald')
    expect(await migrate(sql, { schema, parts: [widgets(1)] })).toMatchObject([{ status: 'applied' }])
    expect(await columns(schema, 'widgets')).toEqual(['id'])
    expect(await migrate(sql, { schema, parts: [widgets(2)] })).toEqual([
      { id: 'widgets', version: 2, previous: 1, status: 'applied' },
    ])
    expect(await columns(schema, 'widgets')).toEqual(['id', 'name'])
    // An older release starting after the upgrade.
    expect(await migrate(sql, { schema, parts: [widgets(1)] })).toEqual([
      { id: 'widgets', version: 1, previous: 2, status: 'newer' },
    ])
  })

  it('leaves nothing behind when a part fails, and says which', async () => {
    const schema = uniqueName('herald')
    const broken: MigrationPart = {
      id: 'broken',
      version: 1,
      sql: (s) => `create table ${quoteIdentifier(s)}.half (id int); select * from no_such_table;`,
    }
    await expect(migrate(sql, { schema, parts: [broken] })).rejects.toMatchObject({
      code: 'CONNECTION_FAILED',
      message: expect.stringMatching(/migration broken v1 failed: .*no_such_table/) as unknown,
    })
    const [row] = await sql<{ found: boolean }[]>`select to_regnamespace(${schema}) is not null as found`
    expect(row?.found).toBe(false)
  })

  it('checks again under the lock: a part another run applied meanwhile is not run twice', async () => {
    const schema = uniqueName('race')
    // Not idempotent on purpose: running it a second time fails.
    const probe: MigrationPart = {
      id: 'probe',
      version: 1,
      sql: (s) => `create table ${quoteIdentifier(s)}.probe (id int)`,
    }
    const holder = server.connect({ max: 1 })
    try {
      // The lock every Herald migration takes (MIGRATION_LOCK in @herald/core).
      await holder`select pg_advisory_lock(${MIGRATION_LOCK.toString()}::bigint)`
      // Reads "nothing applied", then waits for the lock.
      const running = migrate(sql, { schema, parts: [probe] })
      await waitFor(async () => {
        const [row] = await sql<{ waiting: number }[]>`
          select count(*)::int as waiting from pg_stat_activity
          where wait_event_type = 'Lock' and wait_event = 'advisory'`
        return (row?.waiting ?? 0) > 0
      })
      // Another run (an older release, say) applies the part meanwhile.
      await holder.unsafe(migrationSql({ schema, parts: [probe] }))
      await holder`select pg_advisory_unlock(${MIGRATION_LOCK.toString()}::bigint)`
      expect(await running).toEqual([{ id: 'probe', version: 1, previous: 1, status: 'current' }])
    } finally {
      await holder.end()
    }
  })

  it('refuses malformed parts and schemas before any I/O', async () => {
    const closed = server.connect({ max: 1 })
    await closed.end()
    await expect(migrate(closed, { schema: 'bad-schema' })).rejects.toMatchObject({ code: 'INVALID_OPTION' })
    await expect(
      migrate(closed, { parts: [{ id: 'Bad Id', version: 1, sql: () => '' }] }),
    ).rejects.toMatchObject({ code: 'INVALID_OPTION' })
    await expect(migrate(closed, { parts: [widgets(0)] })).rejects.toMatchObject({ code: 'INVALID_OPTION' })
    await expect(migrate(closed, { parts: [widgets(1), widgets(2)] })).rejects.toMatchObject({
      code: 'INVALID_OPTION',
      message: expect.stringContaining('given twice') as unknown,
    })
  })

  it('migrationSql() is the same DDL as one script, and records the versions', async () => {
    const schema = uniqueName('herald')
    const script = migrationSql({ schema, parts: [...heraldParts, widgets(2)] })
    expect(script).toMatch(
      /^-- Herald tables in schema \w+: lru-log v2, lock-tokens v1, config v1, widgets v2\./,
    )
    await sql.begin((tx) => tx.unsafe(script))
    // Running it twice is harmless.
    await sql.begin((tx) => tx.unsafe(script))
    const outcomes = await migrate(sql, { schema, parts: [...heraldParts, widgets(2)] })
    expect(outcomes.map((outcome) => outcome.status)).toEqual([
      ...heraldParts.map(() => 'current'),
      'current',
    ])
  })
})
