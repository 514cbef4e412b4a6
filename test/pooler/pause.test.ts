import type { Herald } from '@herald/core'
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
 * Publishes and invalidates through `herald` every few ms until `during` resolves; resolves
 * with what each call ended in ('ok' or the error's code) and how many it made.
 */
async function underLoad(
  herald: Herald,
  channel: string,
  invalidate: (key: string) => Promise<void>,
  seed: (key: string) => void,
  during: () => Promise<void>,
): Promise<{ sent: number; outcomes: string[] }> {
  let stop = false
  let sent = 0
  const calls: Promise<string>[] = []
  const load = (async () => {
    while (!stop) {
      const i = sent++
      seed(`k${i}`)
      calls.push(
        Promise.all([herald.publish(channel, i), invalidate(`k${i}`)]).then(
          () => 'ok',
          (error: { code?: string }) => error.code ?? 'untyped',
        ),
      )
      await sleep(5)
    }
  })()
  await sleep(200)
  await during()
  await sleep(200)
  stop = true
  await load
  return { sent, outcomes: await Promise.all(calls) }
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
    await using a = await startedHerald({
      connection: pooler.url,
      listenConnection: server.url,
      publishTimeoutMs: 10_000,
    })
    await using b = await startedHerald({ connection: server.url })
    const channel = uniqueName('paused')
    const received = await collect<number>(b, channel)
    const name = uniqueName('paused_cache')
    const atA = await readyCache<string>(a, { name })
    const atB = await readyCache<string>(b, { name })

    const { sent, outcomes } = await underLoad(
      a,
      channel,
      (key) => atA.invalidate(key),
      (key) => atB.set(key, 'old'),
      async () => {
        await pooler.command('PAUSE')
        await sleep(1_500)
        await pooler.command('RESUME')
      },
    )
    expect(sent).toBeGreaterThan(50)
    expect(outcomes.filter((outcome) => outcome !== 'ok')).toEqual([])
    await received.count(sent)
    expect(new Set(received.payloads()).size).toBe(sent)
    const keys = Array.from({ length: sent }, (_, i) => `k${i}`)
    await waitFor(() => keys.every((key) => atB.get(key) === undefined))
  })

  it('a pause longer than publishTimeoutMs: the calls it caught reject with TIMEOUT, and all after RESUME land', async () => {
    await using a = await startedHerald({
      connection: pooler.url,
      listenConnection: server.url,
      publishTimeoutMs: 500,
    })
    await using b = await startedHerald({ connection: server.url })
    const channel = uniqueName('paused_long')
    const received = await collect<number>(b, channel)
    const name = uniqueName('paused_long_cache')
    const atA = await readyCache<string>(a, { name })
    const atB = await readyCache<string>(b, { name })

    const { sent, outcomes } = await underLoad(
      a,
      channel,
      (key) => atA.invalidate(key),
      (key) => atB.set(key, 'old'),
      async () => {
        await pooler.command('PAUSE')
        await sleep(2_000)
        await pooler.command('RESUME')
      },
    )
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
