import { isHeraldError } from '@herald/core'
import { Locks, type LostEvent } from '@herald/lock'
import {
  once,
  startPgBouncer,
  startPostgres,
  uniqueName,
  type PgBouncer,
  type PgServer,
} from '@herald/testing'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { startedHerald } from '../support/heralds.js'
import { describeWithPgBouncer } from '../support/pooler.js'

describeWithPgBouncer('Locks behind PgBouncer', () => {
  let server: PgServer
  let transactionPooler: PgBouncer
  let sessionPooler: PgBouncer

  beforeAll(async () => {
    server = await startPostgres({ faults: true, label: 'pooler-locks' })
    transactionPooler = await startPgBouncer(server, { mode: 'transaction', poolSize: 4 })
    sessionPooler = await startPgBouncer(server, { mode: 'session' })
  })
  afterAll(async () => {
    await transactionPooler?.close()
    await sessionPooler?.close()
    await server?.close()
  })

  async function advisoryLocksHeld(): Promise<number> {
    const [row] = await server.sql<
      { n: number }[]
    >`select count(*)::int as n from pg_locks where locktype = 'advisory'`
    return row!.n
  }

  it('refuses a lock session behind a transaction pooler with NOT_PINNED, and holds nothing', async () => {
    await using herald = await startedHerald({
      connection: transactionPooler.url,
      listenConnection: server.url,
    })
    await using locks = new Locks({ herald, lockConnection: transactionPooler.url, heartbeatMs: 1_000 })
    const before = await advisoryLocksHeld()
    for (const attempt of [() => locks.acquire(uniqueName('tp')), () => locks.tryAcquire(uniqueName('tp'))]) {
      const error: unknown = await attempt().catch((error: unknown) => error)
      expect(isHeraldError(error) && error.code).toBe('NOT_PINNED')
      expect(String((error as Error).message)).toMatch(/lockConnection/)
    }
    expect(locks.stats().held).toBe(0)
    expect(await advisoryLocksHeld()).toBe(before)
  })

  it('publishes through the transaction pooler while the lock session stays direct: one holder at a time', async () => {
    const options = { connection: transactionPooler.url, listenConnection: server.url }
    await using a = await startedHerald(options)
    await using b = await startedHerald(options)
    await using atA = new Locks({ herald: a })
    await using atB = new Locks({ herald: b })
    const name = uniqueName('direct')
    let holders = 0
    let most = 0
    const work = async (locks: Locks) => {
      for (let round = 0; round < 15; round++) {
        await locks.withLock(
          name,
          async () => {
            most = Math.max(most, ++holders)
            await new Promise((resolve) => setTimeout(resolve, 2))
            holders--
          },
          { timeoutMs: 10_000 },
        )
      }
    }
    await Promise.all([work(atA), work(atB)])
    expect(most).toBe(1)
    expect(atA.stats().acquired + atB.stats().acquired).toBe(30)
    expect(await advisoryLocksHeld()).toBe(0)
  })

  it('holds through a session pooler, and a pooler restart is a lost lock, never a silent one', async () => {
    await using herald = await startedHerald({ connection: server.url })
    await using locks = new Locks({ herald, lockConnection: sessionPooler.url, heartbeatMs: 1_000 })
    await using other = new Locks({ herald })
    const name = uniqueName('session')
    const lock = await locks.acquire(name)
    expect(await other.tryAcquire(name)).toBeUndefined()
    const lost = once<LostEvent>(locks, 'lost', { timeoutMs: 10_000 })
    await sessionPooler.restart()
    expect((await lost).name).toBe(name)
    expect(lock.signal.aborted).toBe(true)
    const next = await other.acquire(name, { timeoutMs: 5_000 })
    expect(next.token).toBeGreaterThan(lock.token)
    await next.release()
    await lock.release()
  })
})
