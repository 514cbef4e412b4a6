import {
  startPgBouncer,
  startPostgres,
  uniqueName,
  waitFor,
  type PgBouncer,
  type PgServer,
} from '@herald/testing'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { readyCache } from '../support/caches.js'
import { collect, startedHerald } from '../support/heralds.js'
import { describeWithPgBouncer } from '../support/pooler.js'

/**
 * Two instances, A publishing through `pooler` (LISTEN direct) and B direct, each with a cache
 * of one name. A publishes and invalidates every few ms while B seeds the keys, across a PAUSE
 * of `pauseMs`; resolves once the load stops, with what each call ended in ('ok' or the error's
 * code), what B received and B's cache. Closed by `await using`.
 */
async function pausedUnderLoad(
  server: PgServer,
  pooler: PgBouncer,
  publishTimeoutMs: number,
  pauseMs: number,
) {
  const a = await startedHerald({ connection: pooler.url, listenConnection: server.url, publishTimeoutMs })
  const b = await startedHerald({ connection: server.url })
  const channel = uniqueName('paused')
  const received = await collect<number>(b, channel)
  const name = uniqueName('paused_cache')
  const atA = await readyCache<string>(a, { name })
  const atB = await readyCache<string>(b, { name })
  let stop = false
  let sent = 0
  const calls: Promise<string>[] = []
  const load = (async () => {
    while (!stop) {
      const i = sent++
      atB.set(`k${i}`, 'old')
      calls.push(
        Promise.all([a.publish(channel, i), atA.invalidate(`k${i}`)]).then(
          () => 'ok',
          (error: { code?: string }) => error.code ?? 'untyped',
        ),
      )
      await sleep(5)
    }
  })()
  await sleep(200)
  await pooler.command('PAUSE')
  await sleep(pauseMs)
  await pooler.command('RESUME')
  await sleep(200)
  stop = true
  await load
  return {
    a,
    channel,
    sent,
    outcomes: await Promise.all(calls),
    received,
    atB,
    async [Symbol.asyncDispose]() {
      await a.close()
      await b.close()
    },
  }
}

describeWithPgBouncer('PgBouncer PAUSE and RESUME under load', () => {
  let server: PgServer
  let pooler: PgBouncer

  beforeAll(async () => {
    server = await startPostgres({ label: 'pooler-pause' })
    pooler = await startPgBouncer(server, { mode: 'transaction' })
  })
  afterAll(async () => {
    await pooler?.close()
    await server?.close()
  })

  it('a pause shorter than publishTimeoutMs: every publish and invalidation lands, nothing stale', async () => {
    await using run = await pausedUnderLoad(server, pooler, 10_000, 1_500)
    const { sent, outcomes, received, atB } = run
    expect(sent).toBeGreaterThan(50)
    expect(outcomes.filter((outcome) => outcome !== 'ok')).toEqual([])
    await received.count(sent)
    expect(new Set(received.payloads()).size).toBe(sent)
    const keys = Array.from({ length: sent }, (_, i) => `k${i}`)
    await waitFor(() => keys.every((key) => atB.get(key) === undefined))
  })

  it('a pause longer than publishTimeoutMs: the calls it caught reject with TIMEOUT, and all after RESUME land', async () => {
    await using run = await pausedUnderLoad(server, pooler, 500, 2_000)
    const { a, channel, sent, outcomes, received, atB } = run
    const failed = outcomes.filter((outcome) => outcome !== 'ok')
    expect(failed.length).toBeGreaterThan(0)
    expect(new Set(failed)).toEqual(new Set(['TIMEOUT']))
    // Every call that resolved was delivered: a resolved publish is a sent NOTIFY.
    const resolved = outcomes.flatMap((outcome, i) => (outcome === 'ok' ? [i] : []))
    await waitFor(() => resolved.every((i) => received.payloads().includes(i)), { timeoutMs: 10_000 })
    // After RESUME, Herald publishes through the pooler again.
    const after = sent + 1
    await a.publish(channel, after)
    await waitFor(() => received.payloads().includes(after))
    // A TIMEOUT says nothing about delivery (the statement may still run once the pooler
    // resumes): the cache on B must not keep a key whose resolved invalidation it was sent.
    expect(resolved.filter((i) => atB.get(`k${i}`) !== undefined)).toEqual([])
    const timedOut = outcomes.flatMap((outcome, i) => (outcome === 'TIMEOUT' ? [i] : []))
    console.log(
      `[pooler] PAUSE 2 s, publishTimeoutMs 500: ${sent} calls, ${timedOut.length} TIMEOUT, ` +
        `${timedOut.filter((i) => received.payloads().includes(i)).length} of those delivered after RESUME`,
    )
  })
})
