import postgres from 'postgres'
import { uniqueName, startPostgres, waitFor, type PgServer } from '@herald/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startedHerald } from '../support/heralds.js'
import { namespace, record, startedConfig } from './support.js'

let server: PgServer
const reader = uniqueName('cfg_reader')
const writer = uniqueName('cfg_writer')

/** The server's URL, logged in as `role`. */
function urlAs(role: string): string {
  const url = new URL(server.url)
  url.username = role
  url.password = 'pw'
  return url.toString()
}

beforeAll(async () => {
  server = await startPostgres()
  // Tables first (as the migrating deploy would), then the GRANTs the README documents.
  await using owner = await startedHerald({ connection: server.url })
  await startedConfig(owner, namespace())
  await owner.close()
  await server.sql.unsafe(`
    create role ${reader} login password 'pw';
    grant usage on schema herald to ${reader};
    grant select on herald.config_heads, herald.config_values, herald.config_history to ${reader};
    create role ${writer} login password 'pw';
    grant usage on schema herald to ${writer};
    grant select on herald.config_heads, herald.config_values, herald.config_history to ${writer};
    grant insert, update on herald.config_heads, herald.config_values to ${writer};
    grant insert on herald.config_history to ${writer};`)
})
afterAll(async () => {
  await server.sql.unsafe(`drop owned by ${reader}, ${writer}; drop role ${reader}; drop role ${writer};`)
  await server.close()
})

describe('access control stays with Postgres', () => {
  it('a read-only role reads config but cannot change it, even though it can NOTIFY', async () => {
    const ns = namespace()
    await using app = await startedHerald({ connection: server.url })
    await using ro = await startedHerald({ connection: urlAs(reader) })
    const atApp = await startedConfig(app, ns)
    await atApp.set('rateLimit', 250)
    const atReader = await startedConfig(ro, ns)
    expect(atReader.get('rateLimit')).toBe(250)
    expect(await atReader.history('rateLimit')).toHaveLength(1)
    const seen = record(atApp)

    const refused: unknown = await atReader.set('rateLimit', 1).catch((error: unknown) => error)
    expect(refused).toMatchObject({ code: 'CONNECTION_FAILED', details: { sqlState: '42501' } })
    await expect(atReader.rollback('rateLimit', 1)).rejects.toMatchObject({ details: { sqlState: '42501' } })
    // Raw SQL fares no better, and it cannot even lock the version row to stall writers
    // (FOR UPDATE needs UPDATE; an advisory lock would have been open to any role).
    const asReader = postgres(urlAs(reader), { max: 1, onnotice: () => {} })
    try {
      await expect(
        asReader`update herald.config_values set value = '1' where namespace = ${ns}`,
      ).rejects.toMatchObject({
        code: '42501',
      })
      await expect(
        asReader`select * from herald.config_heads where namespace = ${ns} for update`,
      ).rejects.toMatchObject({ code: '42501' })
      // What it can do: send a hint claiming a new version. The app reads the history once and finds nothing.
      const syncs = atApp.stats().syncs
      await asReader`select pg_notify('herald_config', ${JSON.stringify({ v: 1, o: 'forger', k: 'config', b: { n: ns, v: 2 } })})`
      await waitFor(() => atApp.stats().syncs === syncs + 1)
    } finally {
      await asReader.end({ timeout: 1 })
    }
    expect(atApp.get('rateLimit')).toBe(250)
    expect(atApp.version).toBe(1)
    expect(await atApp.history('rateLimit')).toHaveLength(1)
    expect(seen.changes).toEqual([])
    expect(seen.errors).toEqual([])
  })

  it('a role with the documented writer GRANTs can set, reset and roll back', async () => {
    const ns = namespace()
    await using app = await startedHerald({ connection: server.url })
    await using rw = await startedHerald({ connection: urlAs(writer) })
    const atApp = await startedConfig(app, ns)
    const atWriter = await startedConfig(rw, ns)
    const v1 = await atWriter.set('banner', 'from the writer role')
    await atWriter.reset('banner')
    await atWriter.rollback('banner', v1)
    await waitFor(() => atApp.version === 3)
    expect(atApp.get('banner')).toBe('from the writer role')
    expect((await atApp.history('banner'))[0]).toMatchObject({ changedBy: writer, rolledBackTo: v1 })
  })
})
