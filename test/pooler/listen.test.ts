import { isHeraldError } from '@herald/core'
import {
  startPgBouncer,
  startPostgres,
  uniqueName,
  waitFor,
  type PgBouncer,
  type PgServer,
} from '@herald/testing'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { readyCache } from '../support/caches.js'
import { collect, newHerald, startedHerald } from '../support/heralds.js'
import { describeWithPgBouncer } from '../support/pooler.js'

describeWithPgBouncer('LISTEN behind PgBouncer', () => {
  let server: PgServer
  let transactionPooler: PgBouncer
  let sessionPooler: PgBouncer

  beforeAll(async () => {
    server = await startPostgres({ faults: true, label: 'pooler-listen' })
    transactionPooler = await startPgBouncer(server, { mode: 'transaction' })
    sessionPooler = await startPgBouncer(server, { mode: 'session' })
  })
  afterAll(async () => {
    await transactionPooler?.close()
    await sessionPooler?.close()
    await server?.close()
  })

  it('refuses to start a listener behind a transaction pooler with NOT_PINNED, instead of hearing nothing', async () => {
    const herald = newHerald({ connection: transactionPooler.url, heartbeatMs: 1_000 })
    const error: unknown = await herald.start().catch((error: unknown) => error)
    expect(isHeraldError(error) && error.code).toBe('NOT_PINNED')
    expect(String((error as Error).message)).toMatch(/transaction pooler.*listenConnection/)
    expect(herald.connected).toBe(false)
    await herald.close()
  })

  it('publishes through the transaction pooler with LISTEN on a direct connection', async () => {
    await using a = await startedHerald({ connection: transactionPooler.url, listenConnection: server.url })
    await using b = await startedHerald({ connection: transactionPooler.url, listenConnection: server.url })
    const channel = uniqueName('pooled')
    const received = await collect<number>(b, channel)
    await Promise.all(Array.from({ length: 200 }, (_, i) => a.publish(channel, i)))
    await received.count(200)
    expect(new Set(received.payloads()).size).toBe(200)

    const name = uniqueName('pooled_cache')
    const atA = await readyCache<string>(a, { name })
    const atB = await readyCache<string>(b, { name })
    atB.set('k', 'old')
    await atA.invalidate('k')
    await waitFor(() => atB.get('k') === undefined)
  })

  it('listens through a session pooler, and a pooler restart is a gap, never silent', async () => {
    await using listener = await startedHerald({ connection: sessionPooler.url, heartbeatMs: 1_000 })
    await using sender = await startedHerald({ connection: server.url })
    const channel = uniqueName('session')
    const received = await collect<string>(listener, channel)
    await sender.publish(channel, 'before')
    await received.count(1)
    let reconnected = 0
    listener.on('reconnected', () => reconnected++)
    await sessionPooler.restart()
    await waitFor(() => reconnected === 1, { timeoutMs: 15_000 })
    await sender.publish(channel, 'after')
    await received.count(2)
    expect(received.payloads()).toEqual(['before', 'after'])
  })
})
