import { startPostgres, type PgServer } from '@herald/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sqlLiteral } from '../src/sql-literal.js'

let server: PgServer

beforeAll(async () => {
  server = await startPostgres({ label: 'sql-literal' })
})
afterAll(async () => {
  await server?.close()
})

describe('sqlLiteral', () => {
  const nasty = [
    '',
    "it's",
    "''",
    '\\',
    '\\\\n',
    "\\'; drop table x; --",
    'line\nbreak\ttab',
    '{"v":1,"b":"quote \\" and backslash \\\\"}',
    '🎉 ünïcödé',
    "E'x'",
  ]
  it.each(['on', 'off'])('reads back exactly with standard_conforming_strings %s', async (setting) => {
    const sql = server.connect({ max: 1 })
    try {
      await sql.unsafe(`set standard_conforming_strings = ${setting}`)
      for (const text of nasty) {
        const [row] = await sql.unsafe<{ value: string }[]>(`select ${sqlLiteral(text)}::text as value`)
        expect(row?.value).toBe(text)
      }
    } finally {
      await sql.end()
    }
  })
})
