import type { InvalidatingCache, LoadDb } from '@herald/lru'
import {
  startPostgres,
  startStandby,
  uniqueName,
  waitFor,
  type PgServer,
  type StandbyServer,
} from '@herald/testing'
import type postgres from 'postgres'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { readyCache } from '../support/caches.js'
import { startedHerald } from '../support/heralds.js'

let primary: PgServer
let standby: StandbyServer
let sql: postgres.Sql
let replicaSql: postgres.Sql
const table = uniqueName('replica_rows')

beforeAll(async () => {
  primary = await startPostgres({ faults: true, label: 'replica-primary' })
  // Before any Herald: making the standby restarts the primary.
  standby = await startStandby(primary, { label: 'replica-standby' })
  sql = primary.connect({ max: 4 })
  replicaSql = standby.connect({ max: 4 })
  await sql.unsafe(`create table ${table} (id text primary key, v int not null)`)
})
afterAll(async () => {
  await standby?.close()
  await primary?.close()
})
afterEach(async () => {
  await standby.resumeReplay()
})

type Row = { v: number }

/** Reads the row with whichever client the cache hands over. */
function loadFrom(id: string) {
  return async (db: LoadDb): Promise<Row> => {
    const [row] = await db<Row[]>`select v from ${db(table)} where id = ${id}`
    return { v: row?.v ?? -1 }
  }
}

async function write(id: string, v: number): Promise<void> {
  await sql`insert into ${sql(table)} (id, v) values (${id}, ${v}) on conflict (id) do update set v = excluded.v`
}

/** v = 1 cached at the reader from an up-to-date replica, then replay paused and v = 2 committed. */
async function lagAfterWrite(
  reader: InvalidatingCache<Row>,
  writer: InvalidatingCache<Row>,
  id: string,
  load: () => Promise<Row>,
  options: { tx?: boolean } = {},
): Promise<void> {
  await write(id, 1)
  await standby.caughtUp(primary)
  expect(await load()).toEqual({ v: 1 })
  expect(reader.get(id)).toEqual({ v: 1 })
  await standby.pauseReplay()
  const received = reader.stats().invalidationsReceived
  if (options.tx === true) {
    await sql.begin(async (tx) => {
      await tx`update ${tx(table)} set v = 2 where id = ${id}`
      await writer.invalidate(id, { tx })
    })
  } else {
    await write(id, 2)
    await writer.invalidate(id)
  }
  await waitFor(() => reader.stats().invalidationsReceived === received + 1)
  expect(reader.get(id)).toBeUndefined()
  // The lag is real: the replica still answers the old row.
  expect(await replicaSql<Row[]>`select v from ${replicaSql(table)} where id = ${id}`).toEqual([{ v: 1 }])
}

describe('InvalidatingCache with a lagging read replica', () => {
  it("fallback 'primary': the reload after an invalidation reads the primary, never caches the replica's old row", async () => {
    await using readerHerald = await startedHerald({ connection: primary.url })
    await using writerHerald = await startedHerald({ connection: primary.url })
    const name = uniqueName('replica')
    const reader = await readyCache<Row>(readerHerald, {
      name,
      replica: { sql: replicaSql, primary: sql, maxWaitMs: 300, fallback: 'primary' },
    })
    const writer = await readyCache<Row>(writerHerald, { name })
    const id = 'p'
    const load = () => reader.getOrLoad(id, loadFrom(id))
    await lagAfterWrite(reader, writer, id, load)

    const started = Date.now()
    expect(await load()).toEqual({ v: 2 })
    expect(Date.now() - started).toBeGreaterThanOrEqual(250)
    expect(reader.get(id)).toEqual({ v: 2 })
    expect(reader.stats()).toMatchObject({ replicaWaits: 1, replicaFallbacks: 1 })
  })

  it("fallback 'no-cache': the replica's old row is returned but not cached; after replay resumes the new one is", async () => {
    await using readerHerald = await startedHerald({ connection: primary.url })
    await using writerHerald = await startedHerald({ connection: primary.url })
    const name = uniqueName('replica')
    const reader = await readyCache<Row>(readerHerald, {
      name,
      replica: { sql: replicaSql, maxWaitMs: 300, fallback: 'no-cache' },
    })
    const writer = await readyCache<Row>(writerHerald, { name })
    const id = 'n'
    const load = () => reader.getOrLoad(id, loadFrom(id))
    await lagAfterWrite(reader, writer, id, load, { tx: true })

    expect(await load()).toEqual({ v: 1 })
    expect(reader.get(id)).toBeUndefined()
    expect(reader.stats().replicaFallbacks).toBe(1)

    await standby.resumeReplay()
    // Waits (briefly) for the replay, then reads the replica and caches what it now holds.
    expect(await load()).toEqual({ v: 2 })
    expect(reader.get(id)).toEqual({ v: 2 })
    expect(reader.stats().replicaFallbacks).toBe(1)
  })

  it('a local invalidation fences too, and a caught-up replica costs no wait', async () => {
    await using herald = await startedHerald({ connection: primary.url })
    const cache = await readyCache<Row>(herald, {
      name: uniqueName('replica'),
      replica: { sql: replicaSql, maxWaitMs: 300, fallback: 'no-cache' },
    })
    const id = 'l'
    await write(id, 1)
    await standby.caughtUp(primary)
    expect(await cache.getOrLoad(id, loadFrom(id))).toEqual({ v: 1 })
    expect(cache.stats().replicaWaits).toBe(0)
    await standby.pauseReplay()
    await write(id, 2)
    await cache.invalidate(id)
    expect(await cache.getOrLoad(id, loadFrom(id))).toEqual({ v: 1 })
    expect(cache.get(id)).toBeUndefined()
    await standby.resumeReplay()
    await standby.caughtUp(primary)
    expect(await cache.getOrLoad(id, loadFrom(id))).toEqual({ v: 2 })
    expect(cache.get(id)).toEqual({ v: 2 })
  })

  it('without the option, the same reload caches the old row (so the tests above can fail)', async () => {
    await using readerHerald = await startedHerald({ connection: primary.url })
    await using writerHerald = await startedHerald({ connection: primary.url })
    const name = uniqueName('replica')
    const reader = await readyCache<Row>(readerHerald, { name })
    const writer = await readyCache<Row>(writerHerald, { name })
    const id = 'c'
    // The loader reads the replica on its own, as an app without the option would.
    const load = () => reader.getOrLoad(id, () => loadFrom(id)(replicaSql))
    await lagAfterWrite(reader, writer, id, load)

    expect(await load()).toEqual({ v: 1 })
    expect(reader.get(id)).toEqual({ v: 1 }) // stale, and it stays: no further invalidation comes
  })
})
