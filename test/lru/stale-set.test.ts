import { startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import type postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readyCache } from '../support/caches.js'
import { startedHerald } from '../support/heralds.js'

let server: PgServer
let sql: postgres.Sql
const table = uniqueName('items')

beforeAll(async () => {
  server = await startPostgres({ label: 'staleset' })
  sql = server.connect({ max: 4 })
  await sql.unsafe(`create table ${table} (id text primary key, v int not null, tag text)`)
})
afterAll(async () => {
  await server.close()
})

/** A loader that reads the row, then waits for the test to let it return what it read. */
function gatedLoader(id: string) {
  let open!: () => void
  const gate = new Promise<void>((resolve) => (open = resolve))
  let read!: () => void
  const hasRead = new Promise<void>((resolve) => (read = resolve))
  const loader = async (): Promise<{ v: number }> => {
    const [row] = await sql<{ v: number }[]>`select v from ${sql(table)} where id = ${id}`
    read()
    await gate
    return { v: row?.v ?? -1 }
  }
  return { loader, hasRead, open }
}

async function write(id: string, v: number): Promise<void> {
  await sql`insert into ${sql(table)} (id, v) values (${id}, ${v}) on conflict (id) do update set v = excluded.v`
}

describe('stale-set guard', () => {
  it('does not cache a load that an invalidation committed during', async () => {
    await using reader = await startedHerald({ connection: server.url })
    await using writer = await startedHerald({ connection: server.url })
    const name = uniqueName('stale')
    const atReader = await readyCache<{ v: number }>(reader, { name })
    const atWriter = await readyCache<{ v: number }>(writer, { name })
    await write('k', 1)
    const { loader, hasRead, open } = gatedLoader('k')
    const loading = atReader.getOrLoad('k', loader)
    await hasRead
    // The slow load holds v = 1; now v = 2 commits with its invalidation.
    await sql.begin(async (tx) => {
      await tx`update ${tx(table)} set v = 2 where id = 'k'`
      await atWriter.invalidate('k', { tx })
    })
    await waitFor(() => atReader.stats().invalidationsReceived === 1)
    open()
    expect(await loading).toEqual({ v: 1 })
    expect(atReader.get('k')).toBeUndefined()
    expect(atReader.stats().staleLoadsDiscarded).toBe(1)
    expect(await atReader.getOrLoad('k', gatedLoaderOpen('k'))).toEqual({ v: 2 })
    expect(atReader.get('k')).toEqual({ v: 2 })
  })

  it('without an overlapping invalidation, the same load is cached (so the test above can fail)', async () => {
    await using reader = await startedHerald({ connection: server.url })
    const atReader = await readyCache<{ v: number }>(reader, { name: uniqueName('control') })
    await write('c', 1)
    const { loader, hasRead, open } = gatedLoader('c')
    const loading = atReader.getOrLoad('c', loader)
    await hasRead
    open()
    expect(await loading).toEqual({ v: 1 })
    expect(atReader.get('c')).toEqual({ v: 1 })
  })

  it('does not cache a load that a tag invalidation or a flush overlapped', async () => {
    await using reader = await startedHerald({ connection: server.url })
    await using writer = await startedHerald({ connection: server.url })
    const name = uniqueName('staletag')
    const atReader = await readyCache<{ v: number }>(reader, { name })
    const atWriter = await readyCache<{ v: number }>(writer, { name })
    await write('t', 1)
    const tagged = gatedLoader('t')
    const byTag = atReader.getOrLoad('t', tagged.loader, { tags: ['org:1'] })
    const flushed = gatedLoader('t')
    const byFlush = atReader.getOrLoad('u', flushed.loader)
    await Promise.all([tagged.hasRead, flushed.hasRead])
    await atWriter.invalidateTags(['org:1'])
    await atWriter.invalidateAll()
    await waitFor(() => atReader.stats().invalidationsReceived === 2)
    tagged.open()
    flushed.open()
    await Promise.all([byTag, byFlush])
    expect(atReader.get('t')).toBeUndefined()
    expect(atReader.get('u')).toBeUndefined()
    expect(atReader.stats().staleLoadsDiscarded).toBe(2)
  })
})

function gatedLoaderOpen(id: string) {
  return async (): Promise<{ v: number }> => {
    const [row] = await sql<{ v: number }[]>`select v from ${sql(table)} where id = ${id}`
    return { v: row?.v ?? -1 }
  }
}
