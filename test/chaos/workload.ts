import type { Herald } from '@herald/core'
import { ConfigStore } from '@herald/config'
import { InvalidatingCache } from '@herald/lru'
import { uniqueName, waitFor, type PgServer } from '@herald/testing'
import { z } from 'zod'
import { expect } from 'vitest'
import { startedHerald } from '../support/heralds.js'
import { expectNoConnections } from './support.js'

const schema = { rateLimit: z.number().int().positive().default(100) }
const KEYS = 10

/**
 * Two instances over one table: A writes rows, invalidates their keys and bumps a config value
 * in a loop; B reads through its cache and follows the config. No `sql.begin()` anywhere in
 * this process, so killing every backend tests Herald, not the driver's transaction bug.
 */
export async function startWorkload(
  server: PgServer,
  prefix: string,
  heraldOptions: { heartbeatMs?: number; reconnect?: { minDelayMs: number; maxDelayMs: number } } = {},
) {
  const sql = server.connect({ max: 2, connection: { application_name: `${prefix}-writer` } })
  const table = uniqueName('items')
  await sql`create table ${sql(table)} (k text primary key, v int not null)`
  await sql`insert into ${sql(table)} select 'k' || i, 0 from generate_series(0, ${KEYS - 1}) i`
  const reconnect = { minDelayMs: 20, maxDelayMs: 500 }
  const a = await startedHerald({
    connection: server.url,
    applicationName: `${prefix}-a`,
    reconnect,
    ...heraldOptions,
  })
  const b = await startedHerald({
    connection: server.url,
    applicationName: `${prefix}-b`,
    reconnect,
    ...heraldOptions,
  })
  const name = uniqueName('cache')
  const namespace = uniqueName('ns')
  const cacheA = new InvalidatingCache<number>({ herald: a, name, max: 1_000 })
  const cacheB = new InvalidatingCache<number>({ herald: b, name, max: 1_000 })
  await Promise.all([cacheA.ready(), cacheB.ready()])
  const configA = new ConfigStore({ herald: a, schema, namespace, pollMs: 0 })
  const configB = new ConfigStore({ herald: b, schema, namespace, pollMs: 0 })
  await Promise.all([configA.start(), configB.start()])
  const versionsSeen: number[] = []
  configB.on('change', ({ version }) => versionsSeen.push(version))
  const errors: string[] = []
  for (const emitter of [a, b, cacheA, cacheB, configA, configB])
    (emitter as unknown as Herald).on('error', (error) => errors.push(error.code))

  const load = async (key: string) => {
    const [row] = await sql<{ v: number }[]>`select v from ${sql(table)} where k = ${key}`
    return row?.v ?? -1
  }
  let running = true
  let writes = 0
  let failures = 0
  const retry = async (action: () => Promise<unknown>) => {
    for (;;) {
      try {
        return await action()
      } catch {
        failures++
        if (!running && failures > 10_000) return undefined
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    }
  }
  const writer = (async () => {
    let i = 0
    while (running) {
      const key = `k${i % KEYS}`
      i++
      // A careful writer: the row, then its invalidation, each retried until it went through.
      await retry(() => sql`update ${sql(table)} set v = v + 1 where k = ${key}`)
      await retry(() => cacheA.invalidate(key))
      if (i % 5 === 0) await retry(() => configA.set('rateLimit', i))
      writes++
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  })()
  const reader = (async () => {
    let i = 0
    while (running) {
      const key = `k${i++ % KEYS}`
      await cacheB.getOrLoad(key, () => load(key)).catch(() => failures++)
      await new Promise((resolve) => setTimeout(resolve, 2))
    }
  })()

  return {
    a,
    b,
    sql,
    errors,
    get writes() {
      return writes
    },
    /** Resolves once the writer has gone `n` more rounds: the fault lands mid-stream. */
    async progress(n = 20) {
      const target = writes + n
      await waitFor(() => writes >= target, { timeoutMs: 15_000, message: 'the writer made no progress' })
    },
    /** Stops the loops, then checks the invariants once notifications settle. */
    async settle() {
      running = false
      await Promise.all([writer, reader])
      // No stuck stale entry: every cached value equals the row, once the last messages land.
      await waitFor(
        async () => {
          const rows = await sql<{ k: string; v: number }[]>`select k, v from ${sql(table)}`
          return rows.every((row) => {
            const cached = cacheB.get(row.k)
            return cached === undefined || cached === row.v
          })
        },
        { timeoutMs: 10_000, message: 'a stale cache entry stayed' },
      )
      // No missed config version: B saw every version, in order, and holds the latest value.
      const [head] = await sql<{ version: number }[]>`
        select version::int as version from herald.config_heads where namespace = ${namespace}`
      const latest = head?.version ?? 0
      await waitFor(() => configB.version === latest, {
        timeoutMs: 10_000,
        message: `config behind: head ${latest}, B at ${configB.version}, A at ${configA.version}, B stats ${JSON.stringify(configB.stats())}, B connected ${b.connected}, errors ${errors.join(',')}`,
      })
      const [value] = await sql<{ value: number }[]>`
        select value from herald.config_values where namespace = ${namespace} and key = 'rateLimit'`
      return {
        staleEntries: 0,
        configVersion: latest,
        configVersionsMissed: latest - new Set(versionsSeen).size,
        configOrdered: versionsSeen.every((v, index) => index === 0 || v > (versionsSeen[index - 1] ?? 0)),
        configValueMatches: value === undefined || configB.get('rateLimit') === value.value,
        writes,
        failedOperationsRetried: failures,
      }
    },
    async close() {
      running = false
      await Promise.all([writer, reader])
      await Promise.all([cacheA.close(), cacheB.close(), configA.close(), configB.close()])
      await Promise.all([a.close(), b.close()])
      await sql.end({ timeout: 1 })
    },
  }
}

/**
 * Ends a fault case the same way every time: the writer makes progress after the fault, the
 * invariants hold once notifications settle (no stale entry, no missed or reordered config
 * version), and closing leaves no connection behind.
 */
export async function finishWorkload(
  load: Awaited<ReturnType<typeof startWorkload>>,
  server: PgServer,
  prefix: string,
) {
  await load.progress()
  const invariant = await load.settle()
  expect(invariant).toMatchObject({ configVersionsMissed: 0, configOrdered: true, configValueMatches: true })
  await load.close()
  await expectNoConnections(server, prefix)
  return invariant
}
