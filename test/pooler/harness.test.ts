import { startPgBouncer, startPostgres, type PgBouncer, type PgServer } from '@herald/testing'
import postgres from 'postgres'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { describeWithPgBouncer } from '../support/pooler.js'

describeWithPgBouncer('PgBouncer harness', () => {
  let server: PgServer
  let bouncer: PgBouncer

  beforeAll(async () => {
    server = await startPostgres({ faults: true, label: 'pooler-harness' })
    bouncer = await startPgBouncer(server, { mode: 'transaction', poolSize: 2 })
  })
  afterAll(async () => {
    await bouncer?.close()
    await server?.close()
  })

  it('pools in transaction mode: one client session spans several server backends', async () => {
    const clients = Array.from({ length: 4 }, () => postgres(bouncer.url, { max: 1, prepare: false }))
    try {
      // Four clients each holding a transaction open need both server connections in turn.
      const pids = await Promise.all(
        clients.map((sql) =>
          sql.begin(async (tx) => {
            const [row] = await tx<{ pid: number }[]>`select pg_backend_pid() as pid, pg_sleep(0.05)`
            return row!.pid
          }),
        ),
      )
      expect(new Set(pids).size).toBe(2)
      const pools = await bouncer.command('SHOW POOLS')
      expect(pools.find((pool) => pool['database'] === 'postgres')?.['pool_mode']).toBe('transaction')
    } finally {
      await Promise.all(clients.map((sql) => sql.end()))
    }
  })

  it('pauses, resumes and restarts', async () => {
    const sql = postgres(bouncer.url, { max: 1, prepare: false })
    try {
      await bouncer.command('PAUSE')
      let answered = false
      const query = sql`select 1 as one`.then(() => (answered = true))
      await new Promise((resolve) => setTimeout(resolve, 200))
      expect(answered).toBe(false)
      await bouncer.command('RESUME')
      await query
      await bouncer.restart()
      expect(await sql`select 2 as two`).toEqual([{ two: 2 }])
    } finally {
      await sql.end()
    }
  })
})
