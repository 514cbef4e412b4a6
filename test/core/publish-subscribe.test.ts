import { HeraldError } from '@herald/core'
import { startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collect, errorsOf, newHerald, startedHerald } from '../support/heralds.js'

let server: PgServer

beforeAll(async () => {
  server = await startPostgres({ label: 'pubsub' })
})
afterAll(async () => {
  await server.close()
})

describe('publish and subscribe', () => {
  it('delivers to every instance, and tells a Herald its own messages apart', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const channel = uniqueName('orders')
    const atA = await collect<{ id: number }>(a, channel)
    const atB = await collect<{ id: number }>(b, channel)
    await a.publish(channel, { id: 42 })
    await atA.count(1)
    await atB.count(1)
    expect(atB.messages[0]?.payload).toEqual({ id: 42 })
    expect(atB.messages[0]?.meta).toMatchObject({ channel, self: false, origin: a.origin, kind: 'message' })
    expect(atA.messages[0]?.meta.self).toBe(true)
  })

  it('calls every handler of a channel and stops calling one after unsubscribe', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const channel = uniqueName('multi')
    const first = await collect(herald, channel)
    const second = await collect(herald, channel)
    await herald.publish(channel, 1)
    await first.count(1)
    await second.count(1)
    await second.subscription.unsubscribe()
    await herald.publish(channel, 2)
    await first.count(2)
    expect(second.payloads()).toEqual([1])
    expect(herald.stats().subscriptions).toBe(1)
  })

  it('UNLISTENs a channel when its last subscription goes', async () => {
    await using herald = await startedHerald({ connection: server.url })
    await using other = await startedHerald({ connection: server.url })
    const channel = uniqueName('unlisten')
    const gone = await collect(herald, channel)
    await gone.subscription.unsubscribe()
    expect(herald.stats().channels).toBe(0)
    const still = await collect(herald, uniqueName('still'))
    // Anything still LISTENed on the old channel would count as a notification received.
    const before = herald.stats().notifications
    await other.publish(channel, 'nobody listens')
    await other.publish(still.subscription.channel, 'marker')
    await still.count(1)
    expect(herald.stats().notifications - before).toBe(1)
  })

  it('carries JSON values of every shape, and multi-byte text intact', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const channel = uniqueName('shapes')
    const received = await collect(herald, channel)
    const values = [
      null,
      0,
      -1.5,
      true,
      'plain',
      '',
      'ключ 商品 🎉 e\u0301',
      ['a', { b: [1, 2] }],
      { nested: { deep: { quote: '"\'\\' } } },
      '\u0000 nul',
      '\ud800 lone',
    ]
    for (const value of values) await herald.publish(channel, value)
    await received.count(values.length)
    expect(received.payloads()).toEqual(values.map((value) => JSON.parse(JSON.stringify(value)) as unknown))
  })

  it('delivers a 100 KB payload intact as one message', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const channel = uniqueName('big')
    const received = await collect<{ text: string }>(b, channel)
    const text = Array.from({ length: 6_000 }, (_, i) => `row ${String(i).padStart(6, '0')} ü🎉\n`).join('')
    expect(Buffer.byteLength(JSON.stringify({ text }))).toBeGreaterThan(100_000)
    await a.publish(channel, { text })
    await received.count(1)
    expect(received.messages).toHaveLength(1)
    expect(received.messages[0]?.payload.text).toBe(text)
    expect(a.stats().notifies).toBeGreaterThanOrEqual(13)
    expect(b.stats().partialMessages).toBe(0)
  })

  it('delivers a 5 MB payload and, between its chunks, other messages in order', async () => {
    await using a = await startedHerald({ connection: server.url })
    const channel = uniqueName('huge')
    const received = await collect<unknown>(a, channel)
    const big = { blob: 'x€'.repeat(2_500_000) }
    await Promise.all([a.publish(channel, 'before'), a.publish(channel, big), a.publish(channel, 'after')])
    await received.count(3, 30_000)
    expect(received.payloads()).toEqual(['before', big, 'after'])
  })

  it('coalesces publishes to one channel in one tick into few NOTIFYs, in order', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const channel = uniqueName('coalesce')
    const received = await collect<number>(b, channel)
    const numbers = Array.from({ length: 1_000 }, (_, i) => i)
    await Promise.all(numbers.map((n) => a.publish(channel, n)))
    await received.count(numbers.length)
    expect(received.payloads()).toEqual(numbers)
    expect(a.stats().published).toBe(1_000)
    expect(a.stats().notifies).toBeLessThanOrEqual(3)
  })

  it('keeps one publisher’s messages in order across statements', async () => {
    await using a = await startedHerald({ connection: server.url, publishPoolSize: 4 })
    const channel = uniqueName('order')
    const received = await collect<number>(a, channel)
    const sends: Promise<void>[] = []
    for (let i = 0; i < 200; i++) {
      sends.push(a.publish(channel, i))
      // Spread across ticks, so they go out in many statements over several pool connections.
      if (i % 7 === 0) await new Promise((resolve) => setImmediate(resolve))
    }
    await Promise.all(sends)
    await received.count(200)
    expect(received.payloads()).toEqual(Array.from({ length: 200 }, (_, i) => i))
  })

  it('uses exactly one listener connection for 20 channels', async () => {
    const applicationName = uniqueName('one').slice(0, 30)
    await using herald = await startedHerald({ connection: server.url, applicationName })
    const channels = Array.from({ length: 20 }, (_, i) => uniqueName(`ch${i}`))
    const collectors = await Promise.all(channels.map((channel) => collect(herald, channel)))
    const listeners = await server.backendPids({ applicationName: `${applicationName}-listener` })
    expect(listeners).toHaveLength(1)
    expect(listeners[0]).toBe(herald.stats().backendPid)
    await Promise.all(channels.map((channel, i) => herald.publish(channel, i)))
    await Promise.all(collectors.map((collector) => collector.count(1)))
    const [row] = await server.sql<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity where application_name = ${`${applicationName}-listener`}`
    expect(row?.n).toBe(1)
  })
})

describe('transactions', () => {
  it('delivers on commit, not before', async () => {
    const sql = server.connect({ max: 2 })
    await using herald = await startedHerald({ connection: server.url, sql })
    const channel = uniqueName('tx')
    const received = await collect(herald, channel)
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    const transaction = sql.begin(async (tx) => {
      await herald.publish(channel, { committed: true }, { tx })
      await held
    })
    await herald.publish(channel, 'outside')
    await received.count(1)
    expect(received.payloads()).toEqual(['outside'])
    release()
    await transaction
    await received.count(2)
    expect(received.payloads()).toEqual(['outside', { committed: true }])
  })

  it('delivers nothing from a rolled-back transaction, chunked payloads included', async () => {
    const sql = server.connect({ max: 2 })
    await using herald = await startedHerald({ connection: server.url, sql })
    const channel = uniqueName('rollback')
    const received = await collect(herald, channel)
    await expect(
      sql.begin(async (tx) => {
        await herald.publish(channel, 'small', { tx })
        await herald.publish(channel, 'y'.repeat(50_000), { tx })
        throw new Error('roll back')
      }),
    ).rejects.toThrow('roll back')
    await herald.publish(channel, 'marker')
    await received.count(1)
    // Notifications arrive in commit order: nothing from the rolled-back transaction came before the marker.
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(received.payloads()).toEqual(['marker'])
  })
})

describe('bad input', () => {
  const hostile = [
    '',
    'a'.repeat(64),
    'é'.repeat(32),
    'x"; drop table users; --',
    "it's",
    'new\nline',
    'nul\u0000',
    ' lead',
    'tab\t',
  ]

  it.each(hostile)('refuses channel %j with INVALID_CHANNEL before any I/O', async (channel) => {
    const herald = newHerald({ connection: server.url })
    // Not started: the channel check comes first, so no connection is needed to refuse it.
    await expect(herald.publish(channel, 1)).rejects.toMatchObject({ code: 'INVALID_CHANNEL' })
    await expect(herald.subscribe(channel, () => {})).rejects.toMatchObject({ code: 'INVALID_CHANNEL' })
    await herald.close()
  })

  it('refuses payloads JSON cannot carry with PAYLOAD_INVALID', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const channel = uniqueName('payload')
    for (const payload of [undefined, () => 1, Symbol('s'), 1n]) {
      await expect(herald.publish(channel, payload)).rejects.toMatchObject({ code: 'PAYLOAD_INVALID' })
    }
    expect(herald.stats().notifies).toBe(0)
  })

  it('rejects calls before start with NOT_STARTED and after close with CLOSED', async () => {
    const herald = newHerald({ connection: server.url })
    await expect(herald.publish('orders', 1)).rejects.toMatchObject({ code: 'NOT_STARTED' })
    await expect(herald.subscribe('orders', () => {})).rejects.toMatchObject({ code: 'NOT_STARTED' })
    await herald.start()
    await herald.close()
    await herald.close()
    await expect(herald.publish('orders', 1)).rejects.toMatchObject({ code: 'CLOSED' })
    await expect(herald.subscribe('orders', () => {})).rejects.toMatchObject({ code: 'CLOSED' })
    await expect(herald.start()).rejects.toMatchObject({ code: 'CLOSED' })
  })

  it('refuses bad options with INVALID_OPTION', () => {
    const code = (action: () => unknown) => {
      try {
        action()
      } catch (error) {
        return (error as HeraldError).code
      }
      return undefined
    }
    expect(code(() => newHerald({}))).toBe('INVALID_OPTION')
    expect(code(() => newHerald({ connection: server.url, heartbeatMs: -1 }))).toBe('INVALID_OPTION')
    expect(
      code(() => newHerald({ connection: server.url, reconnect: { minDelayMs: 100, maxDelayMs: 10 } })),
    ).toBe('INVALID_OPTION')
  })

  it('reports a foreign or malformed notification as PAYLOAD_INVALID and keeps listening', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const errors = errorsOf(herald)
    const channel = uniqueName('forged')
    const received = await collect(herald, channel)
    const forged = [
      'hello',
      '{"v":1}',
      '{"v":2,"o":"x","k":"message","b":1}',
      '~x:0:9999999\nzz',
      '~bad header',
      '[1,2]',
      '',
    ]
    for (const payload of forged) await server.sql`select pg_notify(${channel}, ${payload})`
    await server.sql`select pg_notify(${channel}, ${'{"v":1,"o":"psql","k":"message","b":"from sql"}'})`
    await received.count(1)
    expect(received.payloads()).toEqual(['from sql'])
    expect(received.messages[0]?.meta.origin).toBe('psql')
    await waitFor(() => errors.length >= forged.length)
    expect(errors.map((error) => error.code)).toEqual(forged.map(() => 'PAYLOAD_INVALID'))
    expect(herald.stats().invalid).toBe(forged.length)
    expect(herald.connected).toBe(true)
  })

  it('turns an error nobody listens for into one process warning per code, instead of dropping it', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const channel = uniqueName('unheard')
    const received = await collect(herald, channel)
    const warnings: Error[] = []
    const onWarning = (warning: Error) => {
      if (warning.name === 'HeraldWarning') warnings.push(warning)
    }
    process.on('warning', onWarning)
    try {
      for (const payload of ['hello', '[1,2]', 'again'])
        await server.sql`select pg_notify(${channel}, ${payload})`
      await server.sql`select pg_notify(${channel}, ${'{"v":1,"o":"psql","k":"message","b":"after"}'})`
      await received.count(1)
      await waitFor(() => warnings.length >= 1)
      await new Promise((resolve) => setImmediate(resolve))
      expect(warnings).toHaveLength(1)
      expect(warnings[0]?.message).toMatch(/^Herald PAYLOAD_INVALID: .*no 'error' listener/)
      expect((warnings[0] as Error & { code?: string }).code).toBe('PAYLOAD_INVALID')
      // With a listener, errors reach it and no warning is added.
      const errors = errorsOf(herald)
      await server.sql`select pg_notify(${channel}, ${'garbage'})`
      await waitFor(() => errors.length === 1)
      expect(warnings).toHaveLength(1)
    } finally {
      process.off('warning', onWarning)
    }
  })

  it('reports a throwing handler as HANDLER_FAILED and still runs the others', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const errors = errorsOf(herald)
    const channel = uniqueName('throwing')
    await herald.subscribe(channel, () => {
      throw new Error('sync boom')
    })
    await herald.subscribe(channel, () => Promise.reject(new Error('async boom')))
    const received = await collect(herald, channel)
    await herald.publish(channel, 'one')
    await herald.publish(channel, 'two')
    await received.count(2)
    await waitFor(() => errors.length >= 4)
    expect(errors.map((error) => error.code)).toEqual([
      'HANDLER_FAILED',
      'HANDLER_FAILED',
      'HANDLER_FAILED',
      'HANDLER_FAILED',
    ])
    expect(herald.stats().handlerErrors).toBe(4)
  })
})
