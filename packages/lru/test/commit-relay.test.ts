import { startPostgres, waitFor, type PgServer } from '@herald/testing'
import type postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CommitRelay, type RelayEntry } from '../src/commit-relay.js'

let server: PgServer
let sql: postgres.Sql

beforeAll(async () => {
  server = await startPostgres({ label: 'commit-relay' })
  sql = server.connect({ max: 2 })
})
afterAll(async () => {
  await sql?.end()
  await server?.close()
})

async function committedTxid(): Promise<string> {
  return sql.begin(async (tx) => {
    const [row] = await tx<{ txid: string }[]>`select pg_current_xact_id()::text as txid`
    return row!.txid
  })
}

describe('CommitRelay', () => {
  it('still announces a commit, and reports the error, when applying it here throws', async () => {
    const published: string[][] = []
    const errors: string[] = []
    let throws = true
    const relay = new CommitRelay(sql, {
      committed: () => {
        if (throws) throw new Error('evict failed')
      },
      publish: (entries) => {
        published.push(entries.map((entry) => entry.pendingId))
        return Promise.resolve()
      },
      rolledBack: () => {
        throw new Error('never rolled back here')
      },
      error: (error, context) => errors.push(`${context}: ${(error as Error).message}`),
    })
    const entry = (pendingId: string, txid: string): RelayEntry => ({
      pendingId,
      txid,
      change: { keys: ['k'] },
    })
    relay.add(entry('first', await committedTxid()))
    await waitFor(() => published.length === 1)
    expect(published).toEqual([['first']])
    expect(errors).toEqual(['applying relayed commits here failed: evict failed'])
    throws = false
    relay.add(entry('second', await committedTxid()))
    await waitFor(() => published.length === 2)
    expect(published[1]).toEqual(['second'])
    await relay.close()
  })
})
