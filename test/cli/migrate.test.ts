import { migrate, migrationSql, quoteIdentifier, type MigrationPart } from '@herald/core'
import { heraldParts } from 'herald'
import { startPostgres, uniqueName, type PgServer } from '@herald/testing'
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
      { id: 'lru-log', version: 1, previous: undefined, status: 'applied' },
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
      { part: 'lru-log', version: 1 },
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
      /^-- Herald tables in schema \w+: lru-log v1, lock-tokens v1, config v1, widgets v2\./,
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
