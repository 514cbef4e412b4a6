import { startPostgres, startStandby, waitFor } from '@herald/testing'
import { describe, expect, it } from 'vitest'

describe('streaming standby (harness)', () => {
  it('replays the primary, and holds its writes back while replay is paused', async () => {
    await using primary = await startPostgres({ faults: true, label: 'replica-primary' })
    await using standby = await startStandby(primary)
    await primary.sql`create table standby_probe (v int not null)`
    await primary.sql`insert into standby_probe values (1)`
    await standby.caughtUp(primary)
    expect(await standby.sql`select v from standby_probe`).toEqual([{ v: 1 }])
    await standby.pauseReplay()
    await primary.sql`update standby_probe set v = 2`
    await primary.sql`select pg_switch_wal()`
    // Received but not replayed: the standby still answers the old row.
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(await standby.sql`select v from standby_probe`).toEqual([{ v: 1 }])
    await standby.resumeReplay()
    await waitFor(async () => (await standby.sql<{ v: number }[]>`select v from standby_probe`)[0]?.v === 2)
  })
})
