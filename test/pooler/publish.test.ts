import {
  startPgBouncer,
  startPostgres,
  uniqueName,
  waitFor,
  type PgBouncer,
  type PgServer,
} from '@herald/testing'
import postgres from 'postgres'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { readyCache } from '../support/caches.js'
import { collect, startedHerald } from '../support/heralds.js'
import { describeWithPgBouncer } from '../support/pooler.js'

/** Settles within `ms` or rejects: a publish that hangs must fail the test, not stall it. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([
    promise,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms),
    ),
  ])
}

describeWithPgBouncer('publishing through PgBouncer in transaction mode', () => {
  let server: PgServer
  let pooler: PgBouncer

  beforeAll(async () => {
    server = await startPostgres({ faults: true, label: 'pooler-publish' })
    pooler = await startPgBouncer(server, { mode: 'transaction', poolSize: 4 })
  })
  afterAll(async () => {
    await pooler?.close()
    await server?.close()
  })

  it('works with default options: Herald stops preparing its statements behind a proxy', async () => {
    await using direct = await startedHerald({ connection: server.url })
    expect(direct.stats().preparedStatements).toBe(true)
    await using publisher = await startedHerald({
      connection: pooler.url,
      listenConnection: server.url,
      publishPoolSize: 4,
    })
    expect(publisher.stats().preparedStatements).toBe(false)
    const channels = Array.from({ length: 37 }, () => uniqueName('pub'))
    const received = await Promise.all(channels.map((channel) => collect<number>(direct, channel)))
    // With prepared statements, 16 of these 600 never settled (pgbouncer 1.18).
    const results = await Promise.allSettled(
      Array.from({ length: 600 }, (_, i) => within(publisher.publish(channels[i % 37]!, i), 10_000)),
    )
    expect(results.filter((result) => result.status === 'rejected')).toEqual([])
    await waitFor(() => received.reduce((sum, r) => sum + r.messages.length, 0) === 600)

    // Chunked, with quotes and backslashes: sent as literals, without parameters, behind the proxy.
    const big = `it's \\ "quoted" 🎉\n`.repeat(5_000)
    const bigChannel = uniqueName('pub_big')
    const bigReceived = await collect<string>(direct, bigChannel)
    await within(publisher.publish(bigChannel, big), 10_000)
    await bigReceived.count(1)
    expect(bigReceived.payloads()[0]).toBe(big)
  })

  it("invalidates inside the app's transaction on a pooled postgres.js client with default options", async () => {
    await using a = await startedHerald({ connection: pooler.url, listenConnection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const app = postgres(pooler.url, { max: 4, onnotice: () => {} })
    try {
      const name = uniqueName('pooled_tx')
      const atA = await readyCache<string>(a, { name })
      const atB = await readyCache<string>(b, { name })
      for (let i = 0; i < 50; i++) atB.set(`k${i}`, 'old')
      for (let i = 0; i < 50; i++) {
        await within(
          app.begin(async (tx) => {
            await tx`select ${i}::int as i`
            await atA.invalidate(`k${i}`, { tx })
          }),
          10_000,
        )
      }
      await waitFor(() => atB.size === 0)
    } finally {
      await app.end()
    }
  })
})
