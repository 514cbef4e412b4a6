import { startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import { Herald } from '@herald/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collect, newHerald, startedHerald } from '../support/heralds.js'

let server: PgServer

beforeAll(async () => {
  server = await startPostgres({ label: 'lifecycle' })
})
afterAll(async () => {
  await server.close()
})

function timers(): number {
  return process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length
}

describe('lifecycle', () => {
  it('limits async handlers to `concurrency` and keeps their order', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const channel = uniqueName('conc')
    let running = 0
    let peak = 0
    const done: number[] = []
    const subscription = await herald.subscribe<number>(
      channel,
      async (n) => {
        running++
        peak = Math.max(peak, running)
        await new Promise((resolve) => setTimeout(resolve, 5))
        running--
        done.push(n)
      },
      { concurrency: 2 },
    )
    await Promise.all(Array.from({ length: 20 }, (_, i) => herald.publish(channel, i)))
    await waitFor(() => done.length === 20)
    expect(peak).toBe(2)
    expect(subscription.stats()).toMatchObject({ delivered: 20, running: 0, queued: 0 })
  })

  it('close() waits for running handlers, then leaves no connection and no timer behind', async () => {
    const applicationName = uniqueName('close').slice(0, 30)
    const timersBefore = timers()
    const herald = await startedHerald({ connection: server.url, applicationName })
    const channel = uniqueName('closing')
    let finished = false
    let started = false
    await herald.subscribe(channel, async () => {
      started = true
      await new Promise((resolve) => setTimeout(resolve, 300))
      finished = true
    })
    await herald.publish(channel, 'slow')
    await waitFor(() => started)
    await herald.close()
    expect(finished).toBe(true)
    await waitFor(
      async () => (await server.backendPids({ applicationName: `${applicationName}-listener` })).length === 0,
    )
    await waitFor(
      async () =>
        (await server.backendPids({ applicationName: `${applicationName}-publisher` })).length === 0,
    )
    expect(timers()).toBeLessThanOrEqual(timersBefore)
  })

  it('close() gives up on a handler that outlives closeTimeoutMs', async () => {
    const herald = await startedHerald({ connection: server.url, closeTimeoutMs: 100 })
    const channel = uniqueName('stuck')
    let started = false
    await herald.subscribe(channel, () => {
      started = true
      return new Promise<void>(() => {})
    })
    await herald.publish(channel, 'forever')
    await waitFor(() => started)
    const begin = Date.now()
    await herald.close()
    expect(Date.now() - begin).toBeLessThan(2_000)
  })

  it('stops delivering at close(): messages after it are not handled', async () => {
    await using publisher = await startedHerald({ connection: server.url })
    const herald = await startedHerald({ connection: server.url })
    const channel = uniqueName('after')
    const received = await collect(herald, channel)
    await publisher.publish(channel, 1)
    await received.count(1)
    await herald.close()
    await publisher.publish(channel, 2)
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(received.payloads()).toEqual([1])
  })

  it('supports `await using`', async () => {
    let closedHerald: { closed: boolean } | undefined
    {
      await using herald = await startedHerald({ connection: server.url })
      closedHerald = herald
      expect(herald.closed).toBe(false)
    }
    expect(closedHerald?.closed).toBe(true)
  })

  it('start() fails with CONNECTION_FAILED on a port nobody listens on, within its timeout', async () => {
    const herald = newHerald({ connection: 'postgres://nobody:x@127.0.0.1:1/none', connectTimeoutMs: 300 })
    const begin = Date.now()
    await expect(herald.start({ timeoutMs: 500 })).rejects.toMatchObject({ code: 'CONNECTION_FAILED' })
    expect(Date.now() - begin).toBeLessThan(3_000)
    await herald.close()
  })

  it('start() keeps retrying a refused connection for its whole timeoutMs, then says how long and how often', async () => {
    const herald = newHerald({
      connection: 'postgres://nobody:x@127.0.0.1:1/none',
      connectTimeoutMs: 300,
      reconnect: { minDelayMs: 100, maxDelayMs: 200 },
    })
    const begin = Date.now()
    const failure = await herald.start({ timeoutMs: 1_500 }).catch((error: unknown) => error)
    const elapsed = Date.now() - begin
    expect(failure).toMatchObject({ code: 'CONNECTION_FAILED' })
    const attempts = Number(
      /still failing after \d+ ms and (\d+) attempts/.exec((failure as Error).message)?.[1],
    )
    // Retried until the deadline, not given up after the first refusal.
    expect(elapsed).toBeGreaterThanOrEqual(1_400)
    expect(attempts).toBeGreaterThan(2)
    await herald.close()
  })

  it('refuses a malformed connection string at construction, without echoing it', async () => {
    const secret = 'hunter2'
    for (const [name, value] of [
      ['connection', `http://app:${secret}@db.internal/app`],
      ['connection', `postgres://app:${secret}@[db/app`],
      ['connection', `app:${secret}@db.internal/app`],
      ['listenConnection', `postgres://app:${secret}@db:notaport/app`],
    ] as const) {
      const options =
        name === 'connection' ? { connection: value } : { connection: server.url, [name]: value }
      let error: unknown
      try {
        new Herald(options)
      } catch (thrown) {
        error = thrown
      }
      expect(error, value).toMatchObject({ code: 'INVALID_OPTION' })
      expect((error as Error).message).toMatch(new RegExp(`^${name} `))
      expect((error as Error).message).not.toContain(secret)
    }
    // Several hosts, a Unix socket directory and percent-encoded passwords stay accepted.
    for (const value of [
      'postgres://app:p%40ss@h1:5432,h2:5433/app',
      'postgresql:///app?host=/var/run/postgresql',
      server.url,
    ]) {
      const herald = new Herald({ connection: value })
      await herald.close()
    }
  })

  it('start() fails at once on a wrong password, without retrying', async () => {
    const url = new URL(server.url)
    url.password = 'wrong'
    const herald = newHerald({ connection: url.toString() })
    const begin = Date.now()
    await expect(herald.start({ timeoutMs: 20_000 })).rejects.toMatchObject({ code: 'CONNECTION_FAILED' })
    expect(Date.now() - begin).toBeLessThan(5_000)
    await herald.close()
  })

  it('start() honours an AbortSignal', async () => {
    const herald = newHerald({ connection: 'postgres://nobody:x@127.0.0.1:1/none', connectTimeoutMs: 200 })
    const controller = new AbortController()
    setTimeout(() => controller.abort(new Error('shutting down')), 100)
    await expect(herald.start({ signal: controller.signal, timeoutMs: 60_000 })).rejects.toMatchObject({
      code: 'ABORTED',
    })
    await herald.close()
  })

  it('close() during a retrying start() ends it at once with CLOSED', async () => {
    const herald = newHerald({ connection: 'postgres://nobody:x@127.0.0.1:1/none', connectTimeoutMs: 200 })
    const starting = herald.start({ timeoutMs: 60_000 })
    await new Promise((resolve) => setTimeout(resolve, 150))
    const begin = Date.now()
    await herald.close()
    await expect(starting).rejects.toMatchObject({ code: 'CLOSED' })
    expect(Date.now() - begin).toBeLessThan(1_000)
  })

  it('a start() that times out while connecting leaves no connection behind', async () => {
    const applicationName = uniqueName('abandon').slice(0, 30)
    const herald = newHerald({ connection: server.url, applicationName })
    await expect(herald.start({ timeoutMs: 1 })).rejects.toMatchObject({ code: 'TIMEOUT' })
    await waitFor(
      async () => (await server.backendPids({ applicationName: `${applicationName}-listener` })).length === 0,
      { timeoutMs: 5_000 },
    )
    // And the Herald can start again afterwards.
    await herald.start()
    expect(herald.connected).toBe(true)
    await herald.close()
  })

  it('subscribe() honours timeoutMs and signal and leaves no subscription behind', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const controller = new AbortController()
    controller.abort()
    await expect(
      herald.subscribe(uniqueName('aborted'), () => {}, { signal: controller.signal }),
    ).rejects.toMatchObject({
      code: 'ABORTED',
    })
    expect(herald.stats().subscriptions).toBe(0)
  })

  it('publishes through the app’s own client and LISTENs on a separate connection URL', async () => {
    const applicationName = uniqueName('split').slice(0, 30)
    const sql = server.connect({ max: 1, connection: { application_name: `${applicationName}-app` } })
    await using herald = await startedHerald({ sql, listenConnection: server.url, applicationName })
    const channel = uniqueName('split')
    const received = await collect(herald, channel)
    await herald.publish(channel, 'via app client')
    await received.count(1)
    expect(await server.backendPids({ applicationName: `${applicationName}-publisher` })).toHaveLength(0)
    expect(await server.backendPids({ applicationName: `${applicationName}-listener` })).toHaveLength(1)
  })
})
