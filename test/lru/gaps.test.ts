import type { ReplayEvent } from '@herald/lru'
import { once, startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import type postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readyCache } from '../support/caches.js'
import { cutListener, SLOW_RECONNECT } from '../support/faults.js'
import { startedHerald } from '../support/heralds.js'

// Kills listener connections: owns its server.
let server: PgServer
let sql: postgres.Sql

beforeAll(async () => {
  server = await startPostgres({ faults: true, label: 'lru-gaps' })
  sql = server.connect({ max: 4, connection: { application_name: 'test-writer' } })
})
afterAll(async () => {
  await server.close()
})

describe('gaps (flush mode)', () => {
  it('flushes on reconnect, so an invalidation missed in the gap leaves nothing stale', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url, ...SLOW_RECONNECT })
    const name = uniqueName('gap')
    const atA = await readyCache<string>(a, { name })
    const atB = await readyCache<string>(b, { name })
    const reasons: string[] = []
    atB.on('evict', ({ reason }) => reasons.push(reason))
    atB.set('k', 'old')
    atB.set('other', 'x')
    await cutListener(server, b)
    await atA.invalidate('k') // B cannot hear this
    await once(b, 'reconnected')
    await waitFor(() => atB.stats().live)
    expect(atB.size).toBe(0)
    expect(reasons).toEqual(['gap', 'gap'])
    expect(atB.stats().flushes).toBe(1)
  })

  it("'bypass' misses and caches nothing while disconnected", async () => {
    await using b = await startedHerald({ connection: server.url, ...SLOW_RECONNECT })
    const atB = await readyCache<string>(b, { name: uniqueName('bypass') })
    atB.set('k', 'cached')
    await cutListener(server, b)
    expect(atB.get('k')).toBeUndefined()
    expect(await atB.getOrLoad('j', () => 'loaded')).toBe('loaded')
    expect(atB.set('j', 'v')).toBe(false)
    expect(atB.stats().bypassed).toBeGreaterThanOrEqual(2)
    await once(b, 'reconnected')
    expect(atB.get('j')).toBeUndefined()
    expect(atB.set('j', 'v')).toBe(true)
  })

  it("'serve-stale' keeps serving while disconnected, then flushes", async () => {
    await using b = await startedHerald({ connection: server.url, ...SLOW_RECONNECT })
    const atB = await readyCache<string>(b, { name: uniqueName('stale'), onDisconnect: 'serve-stale' })
    atB.set('k', 'cached')
    await cutListener(server, b)
    expect(atB.get('k')).toBe('cached')
    expect(atB.set('j', 'v')).toBe(false)
    await once(b, 'reconnected')
    expect(atB.get('k')).toBeUndefined()
  })

  it('does not cache a load that was in flight across the gap', async () => {
    await using b = await startedHerald({
      connection: server.url,
      reconnect: { minDelayMs: 50, maxDelayMs: 50 },
    })
    const atB = await readyCache<string>(b, { name: uniqueName('across') })
    let open!: () => void
    const gate = new Promise<void>((resolve) => (open = resolve))
    const loading = atB.getOrLoad('k', async () => {
      await gate
      return 'loaded before the gap'
    })
    const reconnected = once(b, 'reconnected')
    await server.terminate(b.stats().backendPid)
    await reconnected
    open()
    expect(await loading).toBe('loaded before the gap')
    expect(atB.get('k')).toBeUndefined()
  })
})

describe('gaps (durable mode)', () => {
  const durable = { pollMs: 60_000 }

  it('replays what it missed instead of flushing', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url, ...SLOW_RECONNECT })
    const name = uniqueName('durable')
    const atA = await readyCache<string>(a, { name, durable })
    const atB = await readyCache<string>(b, { name, durable })
    atB.set('k1', 'old')
    atB.set('k2', 'kept')
    await cutListener(server, b)
    await sql.begin(async (tx) => {
      await atA.invalidate('k1', { tx })
    })
    const replayed = once<ReplayEvent>(atB, 'replay')
    await once(b, 'reconnected')
    expect((await replayed).rows).toBe(1)
    await waitFor(() => atB.stats().live)
    expect(atB.get('k1')).toBeUndefined()
    expect(atB.get('k2')).toBe('kept')
    expect(atB.stats().flushes).toBe(0)
  })

  it('replays a row that committed late with a smaller id (commit order is not id order)', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({
      connection: server.url,
      reconnect: { minDelayMs: 300, maxDelayMs: 300 },
    })
    const name = uniqueName('order')
    const atA = await readyCache<string>(a, { name, durable })
    const atB = await readyCache<string>(b, { name, durable })
    // T1 writes its log row first (smaller id) and holds its transaction open.
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    let logged!: () => void
    const t1Logged = new Promise<void>((resolve) => (logged = resolve))
    const t1 = sql.begin(async (tx) => {
      await atA.invalidate('early', { tx })
      logged()
      await held
    })
    await t1Logged
    // B misses T2 (larger id, commits first) and replays it: its position passes T1's id.
    await cutListener(server, b)
    await sql.begin(async (tx) => {
      await atA.invalidate('late', { tx })
    })
    await once(b, 'reconnected')
    await waitFor(() => atB.stats().live)
    atB.set('early', 'old, loaded while T1 was open')
    // B misses T1's NOTIFY too, and must find its row by transaction id on the next replay.
    await cutListener(server, b)
    release()
    await t1
    const replayed = once<ReplayEvent>(atB, 'replay')
    await once(b, 'reconnected')
    expect((await replayed).rows).toBe(1)
    await waitFor(() => atB.stats().live)
    expect(atB.get('early')).toBeUndefined()
  })

  it('flushes when there is more to replay than maxReplayRows', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url, ...SLOW_RECONNECT })
    const name = uniqueName('toomany')
    const atA = await readyCache<string>(a, { name, durable })
    const atB = await readyCache<string>(b, { name, durable: { ...durable, maxReplayRows: 2 } })
    atB.set('kept?', 'no')
    await cutListener(server, b)
    for (let i = 0; i < 3; i++) await atA.invalidate(`k${i}`)
    await once(b, 'reconnected')
    await waitFor(() => atB.stats().live)
    expect(atB.size).toBe(0)
    expect(atB.stats().flushes).toBe(1)
  })

  it('makes good a lost NOTIFY from the log within pollMs', async () => {
    await using b = await startedHerald({ connection: server.url })
    const name = uniqueName('poll')
    const atB = await readyCache<string>(b, { name, durable: { pollMs: 200 } })
    atB.set('k', 'old')
    // A log row whose NOTIFY never came (its writer died between the two, say).
    await sql`insert into herald.cache_invalidations (cache, keys) values (${name}, ${JSON.stringify(['k'])}::text::jsonb)`
    await waitFor(() => atB.get('k') === undefined, { timeoutMs: 5_000 })
    expect(atB.stats().replayedRows).toBe(1)
  })

  it('reads only recent rows of a long log, not the whole table', async () => {
    await using b = await startedHerald({ connection: server.url })
    const name = uniqueName('long-log')
    // A day's worth of other caches' rows: a poll that read them all would cost O(log).
    const LONG = 200_000
    await sql`insert into herald.cache_invalidations (cache, keys)
      select 'another-cache', '["k"]'::jsonb from generate_series(1, ${LONG}::int)`
    await sql`analyze herald.cache_invalidations`
    const atB = await readyCache<string>(b, { name, durable: { pollMs: 100 } })
    /** Rows read from the table so far, by sequential and index scans. */
    const rowsRead = async (): Promise<number> => {
      const [row] = await sql<{ read: number }[]>`
        select (coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0))::int as read
        from pg_stat_user_tables where schemaname = 'herald' and relname = 'cache_invalidations'`
      return row?.read ?? -1
    }
    // Counters reach the shared statistics when a backend goes idle (at most once a second).
    await new Promise((resolve) => setTimeout(resolve, 1_200))
    const before = await rowsRead()
    atB.set('k', 'old')
    await sql`insert into herald.cache_invalidations (cache, keys) values (${name}, '["k"]'::jsonb)`
    await waitFor(() => atB.get('k') === undefined, { timeoutMs: 5_000 })
    // Several polls have run by the time their counts show: each may read a few recent rows.
    await new Promise((resolve) => setTimeout(resolve, 1_200))
    expect(await rowsRead()).toBeLessThan(before + LONG / 10)
  })

  it('a log pruned empty is not a gap: its readers do not flush at every poll', async () => {
    await using a = await startedHerald({ connection: server.url })
    const atA = await readyCache<string>(a, {
      name: uniqueName('emptied'),
      durable: { pollMs: 50, retentionMs: 1 },
    })
    await atA.invalidate('k')
    // Every row of every cache is older than 1 ms: the prune that follows empties the log.
    await waitFor(
      async () => {
        const [row] = await sql<{ n: number }[]>`select count(*)::int as n from herald.cache_invalidations`
        return row?.n === 0
      },
      { timeoutMs: 10_000 },
    )
    await new Promise((resolve) => setTimeout(resolve, 200))
    const flushes = atA.stats().flushes
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(atA.stats().flushes).toBe(flushes)
  })

  it('prunes rows older than retentionMs, and a reader behind the cut flushes', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url, ...SLOW_RECONNECT })
    const name = uniqueName('prune')
    const atA = await readyCache<string>(a, { name, durable: { pollMs: 100, retentionMs: 1 } })
    const atB = await readyCache<string>(b, { name, durable })
    atB.set('k', 'old')
    await cutListener(server, b)
    await atA.invalidate('k')
    await waitFor(async () => {
      const [row] = await sql<
        { n: number }[]
      >`select count(*)::int as n from herald.cache_invalidations where cache = ${name}`
      return row?.n === 0
    })
    await once(b, 'reconnected')
    await waitFor(() => atB.stats().live)
    expect(atB.get('k')).toBeUndefined()
    expect(atB.stats().flushes).toBe(1)
  })
})
