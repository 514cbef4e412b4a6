import { ConfigStore } from '@herald/config'
import { migrate } from '@herald/core'
import { startPostgres, uniqueName, type PgServer } from '@herald/testing'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newHerald } from '../support/heralds.js'

let server: PgServer
beforeAll(async () => {
  server = await startPostgres({ label: 'migrate-notices' })
})
afterAll(async () => {
  await server.close()
})

describe('migrations through the app’s own client', () => {
  it('print nothing: no "already exists, skipping" NOTICE reaches the app’s onnotice', async () => {
    const notices: string[] = []
    const sql = postgres(server.url, {
      max: 2,
      onnotice: (notice) => notices.push(String(notice['message'])),
    })
    try {
      const schema = uniqueName('notices').slice(0, 40)
      // The schema exists before any Herald table does: every `create ... if not exists` skips something.
      await sql.unsafe(`create schema "${schema}"`)
      await migrate(sql, { schema })
      await migrate(sql, { schema })
      await using herald = newHerald({ connection: server.url, sql })
      await herald.start()
      // The config tables created on first use, through the app's client, in a schema that exists.
      await using config = new ConfigStore({
        herald,
        sql,
        tableSchema: schema,
        namespace: 'app',
        schema: { rateLimit: z.number().default(1) },
        pollMs: 0,
      })
      await config.start()
      await config.set('rateLimit', 2)
      expect(notices).toEqual([])
    } finally {
      await sql.end({ timeout: 1 })
    }
  })
})
