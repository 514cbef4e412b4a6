import { startPostgres, type PgServer } from '@herald/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { newHerald } from '../support/heralds.js'

let standby: PgServer

beforeAll(async () => {
  standby = await startPostgres({ standby: true, label: 'standby' })
})
afterAll(async () => {
  await standby.close()
})

describe('hot standby', () => {
  it('is a standby indeed: in recovery, refusing LISTEN', async () => {
    const [row] = await standby.sql<{ recovery: boolean }[]>`select pg_is_in_recovery() as recovery`
    expect(row?.recovery).toBe(true)
    await expect(standby.sql.unsafe('listen anything')).rejects.toMatchObject({ code: '25006' })
  })

  it('start() refuses a standby at once with HOT_STANDBY', async () => {
    const herald = newHerald({ connection: standby.url })
    const begin = Date.now()
    await expect(herald.start({ timeoutMs: 20_000 })).rejects.toMatchObject({ code: 'HOT_STANDBY' })
    expect(Date.now() - begin).toBeLessThan(5_000)
    await herald.close()
  })

  it('publish through a standby rejects with HOT_STANDBY', async () => {
    // Listening on no standby is possible, but a split setup can point publishing at one.
    await using primary = await startPostgres({ label: 'primary' })
    const herald = newHerald({ listenConnection: primary.url, connection: standby.url })
    await herald.start()
    await expect(herald.publish('orders', 1)).rejects.toMatchObject({ code: 'HOT_STANDBY' })
    await herald.close()
  })
})
