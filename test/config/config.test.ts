import { isHeraldError } from '@herald/core'
import type { ChangeEvent } from '@herald/config'
import { once, startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import type postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { errorsOf, startedHerald } from '../support/heralds.js'
import { appSchema, namespace, newConfig, record, sqlSetStatement, startedConfig } from './support.js'

let server: PgServer
let sql: postgres.Sql

beforeAll(async () => {
  server = await startPostgres()
  sql = server.connect({ max: 4, connection: { application_name: 'config-test-writer' } })
})
afterAll(async () => {
  await server.close()
})

describe('ConfigStore', () => {
  it('broadcasts a change to every instance, typed, with per-key events', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    await using c = await startedHerald({ connection: server.url })
    const ns = namespace()
    const [atA, atB, atC] = await Promise.all([a, b, c].map((herald) => startedConfig(herald, ns)))
    if (atA === undefined || atB === undefined || atC === undefined) throw new Error('unreachable')
    const seenB = record(atB)
    const rateLimitsAtC: ChangeEvent<typeof appSchema, 'rateLimit'>[] = []
    atC.on('change:rateLimit', (event) => rateLimitsAtC.push(event))
    const bannersAtC: unknown[] = []
    atC.on('change:banner', (event) => bannersAtC.push(event.value))

    const version = await atA.set('rateLimit', 200)
    // Read your writes: the writer has applied it when set resolves.
    expect(atA.get('rateLimit')).toBe(200)
    expect(atA.version).toBe(version)
    await waitFor(() => atB.get('rateLimit') === 200 && atC.get('rateLimit') === 200)
    expect(seenB.changes).toEqual([{ key: 'rateLimit', value: 200, previous: 100, version, reason: 'set' }])
    expect(rateLimitsAtC).toHaveLength(1)
    expect(rateLimitsAtC[0]).toMatchObject({ key: 'rateLimit', value: 200, previous: 100, version })
    expect(rateLimitsAtC[0]?.changedAt).toBeInstanceOf(Date)
    expect(bannersAtC).toEqual([])

    await atB.set('features', { search: true, beta: ['x'] })
    await waitFor(() => atA.get('features').search && atC.get('features').search)
    expect(atC.all()).toEqual({ rateLimit: 200, banner: undefined, features: { search: true, beta: ['x'] } })
    expect(atA.version).toBe(version + 1)
    expect(atC.version).toBe(version + 1)
  })

  it('serves schema defaults for keys never set, and reset() returns to them everywhere', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const ns = namespace()
    const atA = await startedConfig(a, ns)
    expect(atA.get('rateLimit')).toBe(100)
    expect(atA.get('banner')).toBeUndefined()
    expect(atA.get('features')).toEqual({ search: false, beta: [] })
    expect(atA.version).toBe(0)
    await atA.set('banner', 'maintenance at noon')
    const atB = await startedConfig(b, ns)
    expect(atB.get('banner')).toBe('maintenance at noon')
    const seen = record(atB)
    await atA.reset('banner')
    expect(atA.get('banner')).toBeUndefined()
    await waitFor(() => seen.changes.length === 1)
    expect(seen.changes[0]).toMatchObject({ key: 'banner', value: undefined, reason: 'reset' })
    expect(atB.get('banner')).toBeUndefined()
  })

  it('refuses an invalid value with VALUE_INVALID and writes nothing', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const ns = namespace()
    const atA = await startedConfig(a, ns)
    const atB = await startedConfig(b, ns)
    const seen = record(atB)
    const refusals = [
      atA.set('rateLimit', -5),
      atA.set('rateLimit', 1.5),
      atA.set('rateLimit', 'fast' as unknown as number),
      atA.set('features', { search: 'yes' } as unknown as { search: boolean; beta: string[] }),
      // JSON cannot carry these: refused before they could reach another instance.
      atA.set('banner', 10n as unknown as string),
      atA.set('banner', (() => 'x') as unknown as string),
    ]
    for (const refusal of refusals) {
      const error: unknown = await refusal.catch((e: unknown) => e)
      expect(isHeraldError(error, 'VALUE_INVALID'), String(error)).toBe(true)
    }
    await expect(atA.set('nope' as 'rateLimit', 1)).rejects.toMatchObject({ code: 'INVALID_KEY' })
    // A Date turns into a string in JSON; a schema for dates would refuse it on every reader.
    const dated = newConfig(a, { schema: { at: z.date().optional() }, namespace: ns, pollMs: 0 })
    await dated.start()
    await expect(dated.set('at', new Date())).rejects.toMatchObject({ code: 'VALUE_INVALID' })

    expect(await atA.history('rateLimit')).toEqual([])
    expect(atA.version).toBe(0)
    expect(atA.get('rateLimit')).toBe(100)
    await atA.set('rateLimit', 7)
    await waitFor(() => atB.get('rateLimit') === 7)
    expect(seen.changes.map((change) => change.version)).toEqual([1])
    expect(seen.errors).toEqual([])
  })

  it('ignores a stored value that fails the schema (written with SQL), keeping the last good value', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const ns = namespace()
    const atA = await startedConfig(a, ns)
    const atB = await startedConfig(b, ns)
    await atA.set('rateLimit', 300)
    await waitFor(() => atB.get('rateLimit') === 300)
    const seen = record(atB)
    await sql.unsafe(sqlSetStatement(), [ns, 'rateLimit', '"fast"'])
    await waitFor(() => seen.errors.length === 1)
    expect(seen.errors[0]?.code).toBe('VALUE_INVALID')
    expect(atB.get('rateLimit')).toBe(300)
    expect(atB.version).toBe(2)
    expect(atB.stats().rejected).toBe(1)
    expect(seen.changes).toEqual([])
    // A later good value applies as usual.
    await sql.unsafe(sqlSetStatement(), [ns, 'rateLimit', '400'])
    await waitFor(() => atB.get('rateLimit') === 400)
    expect(seen.changes).toMatchObject([{ key: 'rateLimit', value: 400, previous: 300, version: 3 }])
    await waitFor(() => atA.get('rateLimit') === 400)

    // At start, with no last good value, the default stands in, and the error is still reported.
    await sql.unsafe(sqlSetStatement(), [ns, 'rateLimit', '-1'])
    await using c = await startedHerald({ connection: server.url })
    const atC = newConfig(c, { schema: appSchema, namespace: ns, pollMs: 0 })
    const errors: string[] = []
    atC.on('error', (error) => errors.push(error.code))
    await atC.start()
    expect(atC.get('rateLimit')).toBe(100)
    expect(errors).toEqual(['VALUE_INVALID'])
  })

  it('fails start() for a required key with neither a stored value nor a default', async () => {
    await using a = await startedHerald({ connection: server.url })
    const ns = namespace()
    const schema = { dsn: z.string().url(), retries: z.number().default(3) }
    const config = newConfig(a, { schema, namespace: ns, pollMs: 0 })
    await expect(config.start()).rejects.toMatchObject({ code: 'VALUE_INVALID', details: { keys: ['dsn'] } })
    expect(() => config.get('dsn')).toThrow(/start/)
    // set works without a started store (an admin tool), and then start succeeds.
    await config.set('dsn', 'postgres://db/app')
    await config.start()
    expect(config.get('dsn')).toBe('postgres://db/app')
    expect(config.ready).toBe(true)
  })

  it('ignores keys in the table that its schema does not know', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const ns = namespace()
    const wider = await startedConfig(a, ns, {
      schema: { ...appSchema, newFlag: z.boolean().default(false) },
    })
    await wider.set('newFlag', true)
    const narrow = await startedConfig(b, ns)
    const seen = record(narrow)
    expect(narrow.version).toBe(1)
    await wider.set('newFlag', false)
    await wider.set('rateLimit', 5)
    await waitFor(() => narrow.get('rateLimit') === 5)
    expect(seen.changes.map((change) => change.key)).toEqual(['rateLimit'])
    expect(seen.errors).toEqual([])
    expect(narrow.version).toBe(3)
    expect(thrown(() => narrow.get('newFlag' as 'rateLimit'))).toMatchObject({ code: 'INVALID_KEY' })
  })

  it('keeps a history (who, when, what) and rolls back to an earlier version everywhere', async () => {
    await using a = await startedHerald({ connection: server.url, applicationName: 'admin-panel' })
    await using b = await startedHerald({ connection: server.url })
    const ns = namespace()
    const atA = await startedConfig(a, ns)
    const atB = await startedConfig(b, ns)
    const v1 = await atA.set('rateLimit', 10)
    const v2 = await atA.set('rateLimit', 20)
    await atA.set('banner', 'hello')
    const v4 = await atA.set('rateLimit', 30)
    const [user] = await sql<{ user: string }[]>`select current_user as user`
    const history = await atA.history('rateLimit')
    expect(history.map((entry) => [entry.version, entry.value])).toEqual([
      [v4, 30],
      [v2, 20],
      [v1, 10],
    ])
    expect(history[0]).toMatchObject({
      changedBy: user?.user,
      applicationName: 'admin-panel-publisher',
      reset: false,
      rolledBackTo: undefined,
    })
    expect(history[0]?.changedAt).toBeInstanceOf(Date)
    expect(Math.abs((history[0]?.changedAt.getTime() ?? 0) - Date.now())).toBeLessThan(60_000)
    expect(await atA.history('rateLimit', { limit: 1 })).toHaveLength(1)

    await waitFor(() => atB.version === v4)
    const seen = record(atB)
    const v5 = await atA.rollback('rateLimit', v1)
    expect(v5).toBe(v4 + 1)
    expect(atA.get('rateLimit')).toBe(10)
    await waitFor(() => atB.get('rateLimit') === 10)
    expect(seen.changes).toEqual([
      { key: 'rateLimit', value: 10, previous: 30, version: v5, reason: 'rollback' },
    ])
    expect((await atB.history('rateLimit'))[0]).toMatchObject({ version: v5, value: 10, rolledBackTo: v1 })

    await expect(atA.rollback('rateLimit', 9_999)).rejects.toMatchObject({ code: 'INVALID_OPTION' })
    // v3 was the banner's, not rateLimit's.
    await expect(atA.rollback('rateLimit', v2 + 1)).rejects.toMatchObject({ code: 'INVALID_OPTION' })
    // A value that today's schema refuses is not restored.
    const stricter = await startedConfig(a, ns, {
      schema: { ...appSchema, rateLimit: z.number().int().min(15).default(100) },
    })
    await expect(stricter.rollback('rateLimit', v1)).rejects.toMatchObject({ code: 'VALUE_INVALID' })
    expect(atA.version).toBe(v5)
  })

  it('with { tx }: applies everywhere on commit, nothing on rollback, and leaves no version hole', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const ns = namespace()
    const atA = await startedConfig(a, ns)
    const atB = await startedConfig(b, ns)
    const seenA = record(atA)
    const seenB = record(atB)

    let version = 0
    await sql.begin(async (tx) => {
      version = await atA.set('rateLimit', 42, { tx })
      await tx`select 1`
      // Not committed: nobody has it, the writer included.
      expect(atA.get('rateLimit')).toBe(100)
    })
    expect(version).toBe(1)
    await waitFor(() => atA.get('rateLimit') === 42 && atB.get('rateLimit') === 42)
    expect(seenA.changes).toMatchObject([{ key: 'rateLimit', value: 42, version: 1 }])
    expect(seenB.changes).toMatchObject([{ key: 'rateLimit', value: 42, version: 1 }])

    const rolledBack = sql.begin(async (tx) => {
      await atA.set('rateLimit', 666, { tx })
      await atA.set('banner', 'never', { tx })
      throw new Error('roll back')
    })
    await expect(rolledBack).rejects.toThrow('roll back')
    expect(await atA.history('rateLimit')).toHaveLength(1)
    // The rolled-back versions were never allocated: the next write is version 2.
    expect(await atA.set('banner', 'after')).toBe(2)
    await waitFor(() => atB.get('banner') === 'after')
    expect(seenB.changes.map((change) => [change.key, change.value, change.version])).toEqual([
      ['rateLimit', 42, 1],
      ['banner', 'after', 2],
    ])
    expect(atB.get('rateLimit')).toBe(42)
  })

  it('ignores forged and malformed notifications: nothing changes, at most one query each', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const ns = namespace()
    const atA = await startedConfig(a, ns)
    const atB = await startedConfig(b, ns)
    await atA.set('rateLimit', 11)
    await waitFor(() => atB.version === 1)
    const seen = record(atB)
    const heraldErrors = errorsOf(b)
    const envelope = (body: unknown) => JSON.stringify({ v: 1, o: 'forger', k: 'config', b: body })
    const notify = (payload: string) => sql`select pg_notify('herald_config', ${payload})`

    // A well-formed hint of a version that does not exist: one history read, nothing found.
    const syncs = atB.stats().syncs
    await notify(envelope({ n: ns, v: 999_999 }))
    await waitFor(() => atB.stats().syncs === syncs + 1)
    // Other namespaces and versions already applied cost nothing.
    await notify(envelope({ n: `${ns}_other`, v: 5 }))
    await notify(envelope({ n: ns, v: 1 }))
    // Malformed: reported, and read once (it might be a producer we do not know).
    await notify(envelope({ n: ns, v: 'lots' }))
    await waitFor(() => seen.errors.length === 1)
    expect(seen.errors[0]?.code).toBe('PAYLOAD_INVALID')
    await waitFor(() => atB.stats().syncs === syncs + 2)
    // Not a Herald envelope at all: core reports it, the store never sees it.
    await notify('{"rateLimit": 0}')
    await waitFor(() => heraldErrors.length === 1)
    expect(heraldErrors[0]?.code).toBe('PAYLOAD_INVALID')

    // A marker change proves every notification above was handled before it.
    await atA.set('banner', 'marker')
    await waitFor(() => atB.get('banner') === 'marker')
    expect(atB.stats().syncs).toBe(syncs + 3)
    expect(atB.get('rateLimit')).toBe(11)
    expect(atB.version).toBe(2)
    expect(seen.changes.map((change) => change.key)).toEqual(['banner'])
  })

  it('serializes writers: a change that commits late is never skipped by a reader', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const ns = namespace()
    const atA = await startedConfig(a, ns)
    const reader = await startedConfig(b, ns)
    const seen = record(reader)

    // T1 allocates its version first and stays open.
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    let allocated!: (version: number) => void
    const t1Version = new Promise<number>((resolve) => (allocated = resolve))
    const t1 = sql.begin(async (tx) => {
      allocated(await atA.set('rateLimit', 1, { tx }))
      await held
    })
    expect(await t1Version).toBe(1)

    // T2 starts after it. It must not be able to commit first with a later version.
    let t2Done = false
    const t2 = atA.set('banner', 'second').then((version) => {
      t2Done = true
      return version
    })
    await waitFor(
      async () =>
        t2Done ||
        (
          await server.sql<{ waiting: boolean }[]>`
            select exists (select 1 from pg_stat_activity
              where wait_event_type = 'Lock' and query like '%config_heads%') as waiting`
        )[0]?.waiting,
    )
    // The reader reads the history now, while T1 is open (a forged hint is a sync request).
    const syncs = reader.stats().syncs
    await sql`select pg_notify('herald_config', ${JSON.stringify({ v: 1, o: 'test', k: 'config', b: { n: ns, v: 1_000_000 } })})`
    await waitFor(() => reader.stats().syncs > syncs)
    // Nothing is visible yet: T2 cannot have committed ahead of T1.
    expect(t2Done).toBe(false)
    expect(reader.version).toBe(0)

    release()
    await t1
    expect(await t2).toBe(2)
    await waitFor(() => reader.version === 2)
    expect(seen.changes.map((change) => [change.key, change.version])).toEqual([
      ['rateLimit', 1],
      ['banner', 2],
    ])
    expect(reader.get('rateLimit')).toBe(1)
    expect(reader.get('banner')).toBe('second')
    // The writer applied both too: its transactional change on commit, its plain one on return.
    await waitFor(() => atA.version === 2)
    expect(atA.all()).toMatchObject({ rateLimit: 1, banner: 'second' })
  })

  it('applies its own write in version order, after changes it had not heard of yet', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const ns = namespace()
    // A hears no hints: it learns of B's change only through its own write.
    const atA = await startedConfig(a, ns, { channel: uniqueName('cfg_quiet') })
    const atB = await startedConfig(b, ns)
    const seen = record(atA)
    await atB.set('banner', 'from B')
    expect(atA.version).toBe(0)
    expect(await atA.set('rateLimit', 9)).toBe(2)
    expect(seen.changes.map((change) => [change.key, change.version])).toEqual([
      ['banner', 1],
      ['rateLimit', 2],
    ])
    expect(atA.get('banner')).toBe('from B')
    expect(atA.version).toBe(2)
  })

  it('re-reads every value when the history has a hole', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const ns = namespace()
    const atA = await startedConfig(a, ns)
    await atA.set('banner', 'one')
    // B hears only the hints this test sends it.
    const quiet = uniqueName('cfg_quiet')
    const atB = await startedConfig(b, ns, { channel: quiet })
    expect(atB.version).toBe(1)
    const seen = record(atB)
    const resynced = once<{ from: number; to: number }>(atB, 'resync')
    await atA.set('rateLimit', 77)
    await atA.set('banner', 'three')
    // Someone prunes the history by hand before B reads it.
    await sql`delete from herald.config_history where namespace = ${ns} and version = 2`
    await sql`select pg_notify(${quiet}, ${JSON.stringify({ v: 1, o: 'test', k: 'config', b: { n: ns, v: 3 } })})`
    expect(await resynced).toEqual({ from: 1, to: 3 })
    expect(atB.get('rateLimit')).toBe(77)
    expect(atB.get('banner')).toBe('three')
    expect(atB.version).toBe(3)
    expect(seen.changes.map((change) => [change.key, change.reason]).sort()).toEqual([
      ['banner', 'resync'],
      ['rateLimit', 'resync'],
    ])
  })

  it('reads the history on a poll as a backstop for a hint that never came', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const ns = namespace()
    const atA = await startedConfig(a, ns)
    const atB = await startedConfig(b, ns, { pollMs: 200, channel: uniqueName('cfg_quiet') })
    // A's hints go to 'herald_config', which B does not listen to.
    await atA.set('rateLimit', 55)
    await waitFor(() => atB.get('rateLimit') === 55, { timeoutMs: 5_000 })
  })

  it('creates its tables once when many instances start together, and not with migrate: false', async () => {
    const tableSchema = namespace('cfg_schema')
    await using a = await startedHerald({ connection: server.url })
    try {
      const missing = newConfig(a, {
        schema: appSchema,
        namespace: 'x',
        tableSchema,
        migrate: false,
        pollMs: 0,
      })
      await expect(missing.start()).rejects.toMatchObject({
        code: 'CONNECTION_FAILED',
        details: { sqlState: '42P01' },
      })
      const heralds = await Promise.all(
        Array.from({ length: 6 }, () => startedHerald({ connection: server.url, publishPoolSize: 1 })),
      )
      try {
        const stores = heralds.map((herald) =>
          newConfig(herald, { schema: appSchema, namespace: 'x', tableSchema, pollMs: 0 }),
        )
        await Promise.all(stores.map((store) => store.start()))
        await stores[0]?.set('rateLimit', 9)
        await Promise.all(stores.map((store) => waitFor(() => store.get('rateLimit') === 9)))
      } finally {
        await Promise.all(heralds.map((herald) => herald.close()))
      }
    } finally {
      await sql.unsafe(`drop schema if exists ${tableSchema} cascade`)
    }
  })

  it('closes idempotently; writes after close reject with CLOSED, get keeps the last values', async () => {
    await using a = await startedHerald({ connection: server.url })
    const ns = namespace()
    const config = await startedConfig(a, ns)
    await config.set('rateLimit', 3)
    await config.close()
    await config.close()
    expect(config.ready).toBe(false)
    expect(config.get('rateLimit')).toBe(3)
    await expect(config.set('rateLimit', 4)).rejects.toMatchObject({ code: 'CLOSED' })
    await expect(config.start()).rejects.toMatchObject({ code: 'CLOSED' })
    expect(a.stats().subscriptions).toBe(0)
    {
      await using disposable = await startedConfig(a, ns)
      expect(disposable.get('rateLimit')).toBe(3)
    }
    expect(a.stats().subscriptions).toBe(0)
  })

  it('reports a throwing change listener as an error and keeps applying', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const ns = namespace()
    const atA = await startedConfig(a, ns)
    const atB = await startedConfig(b, ns)
    const errors: string[] = []
    atB.on('error', (error) => errors.push(error.code))
    atB.on('change:rateLimit', () => {
      throw new Error('listener bug')
    })
    await atA.set('rateLimit', 1)
    await atA.set('rateLimit', 2)
    await waitFor(() => atB.get('rateLimit') === 2)
    expect(errors).toEqual(['HANDLER_FAILED', 'HANDLER_FAILED'])
  })
})

function thrown(run: () => unknown): unknown {
  try {
    run()
  } catch (error) {
    return error
  }
  throw new Error('expected a throw')
}
