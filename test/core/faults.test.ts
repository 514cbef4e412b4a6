import type { ReconnectedEvent } from '@herald/core'
import { once, startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collect, errorsOf, startedHerald } from '../support/heralds.js'

// These tests kill, pause and restart the server: they own it.
let server: PgServer

beforeAll(async () => {
  server = await startPostgres({ faults: true, label: 'faults' })
})
afterAll(async () => {
  await server.close()
})

describe('faults', () => {
  it('reconnects after every backend is terminated, re-LISTENs, and delivery resumes', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const channels = [uniqueName('t1'), uniqueName('t2'), uniqueName('t3')]
    const received = await Promise.all(channels.map((channel) => collect(b, channel)))
    const events: string[] = []
    for (const name of ['disconnected', 'reconnecting', 'connected', 'reconnected'] as const)
      b.on(name, () => events.push(name))
    const oldPid = b.stats().backendPid
    const reconnected = once<ReconnectedEvent>(b, 'reconnected')
    expect(await server.terminate()).toBeGreaterThanOrEqual(2)
    const event = await reconnected
    expect(event.downtimeMs).toBeGreaterThan(0)
    expect(event.downtimeMs).toBeLessThan(5_000)
    expect(event.backendPid).not.toBe(oldPid)
    expect(events).toEqual(['disconnected', 'reconnecting', 'connected', 'reconnected'])
    await waitFor(() => a.connected)
    // The publisher's pool lost its connections too; postgres.js reopens them on the next query.
    await Promise.all(channels.map((channel) => a.publish(channel, 'after')))
    await Promise.all(received.map((collector) => collector.count(1)))
    expect(b.stats()).toMatchObject({ reconnects: 1, connected: true, channels: 3 })
  })

  it('survives repeated terminations, reconnecting every time', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url })
    const channel = uniqueName('repeat')
    const received = await collect<number>(b, channel)
    for (let round = 0; round < 5; round++) {
      const reconnected = once(b, 'reconnected')
      await server.terminate({ applicationName: 'herald-listener' })
      await reconnected
      await a.publish(channel, round)
      await received.count(round + 1)
    }
    expect(received.payloads()).toEqual([0, 1, 2, 3, 4])
    expect(b.stats().reconnects).toBe(5)
  })

  it('finds a paused (half-open) listener backend by heartbeat within heartbeatMs and reconnects', async () => {
    const heartbeatMs = 1_000
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({ connection: server.url, heartbeatMs, applicationName: 'paused' })
    const channel = uniqueName('paused')
    const received = await collect(b, channel)
    await waitFor(() => b.stats().lastHeartbeatAt !== undefined)
    const pid = b.stats().backendPid as number
    const disconnected = once(b, 'disconnected')
    const pausedAt = Date.now()
    await server.pause(pid)
    await disconnected
    const detectedMs = Date.now() - pausedAt
    // heartbeatMs, plus one round trip and timer slack on a shared machine.
    expect(detectedMs).toBeLessThan(heartbeatMs + 1_000)
    await once(b, 'reconnected')
    expect(b.stats().backendPid).not.toBe(pid)
    await a.publish(channel, 'after pause')
    await received.count(1)
    await server.resume(pid)
  })

  it('reconnects after a server restart, with the outage in downtimeMs', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({
      connection: server.url,
      reconnect: { minDelayMs: 20, maxDelayMs: 200 },
    })
    const errors = errorsOf(b)
    const channel = uniqueName('restart')
    const received = await collect(b, channel)
    const reconnected = once<ReconnectedEvent>(b, 'reconnected', { timeoutMs: 20_000 })
    await server.restart({ downMs: 500 })
    const event = await reconnected
    expect(event.downtimeMs).toBeGreaterThanOrEqual(500)
    await a.publish(channel, 'after restart')
    await received.count(1)
    // Refused connections while the server is down are expected and not reported as errors.
    expect(errors).toEqual([])
  })

  it('lets a subscribe made while disconnected complete once reconnected', async () => {
    await using a = await startedHerald({ connection: server.url })
    await using b = await startedHerald({
      connection: server.url,
      reconnect: { minDelayMs: 200, maxDelayMs: 400 },
    })
    const disconnected = once(b, 'disconnected')
    await server.terminate({ applicationName: 'herald-listener' })
    await disconnected
    expect(b.connected).toBe(false)
    const channel = uniqueName('during')
    const received = await collect(b, channel)
    expect(b.connected).toBe(true)
    await a.publish(channel, 'hello')
    await received.count(1)
  })

  it('a publish on a backend that stopped answering rejects with TIMEOUT at publishTimeoutMs, plain or in a transaction', async () => {
    await using herald = await startedHerald({
      connection: server.url,
      publishPoolSize: 1,
      applicationName: 'stuck-publisher',
      publishTimeoutMs: 500,
    })
    const channel = uniqueName('stuck')
    await herald.publish(channel, 'warm')
    const [publisher] = await server.backendPids({ applicationName: 'stuck-publisher-publisher' })
    await server.pause(publisher!)
    try {
      const started = Date.now()
      await expect(herald.publish(channel, 'never answered')).rejects.toMatchObject({ code: 'TIMEOUT' })
      expect(Date.now() - started).toBeLessThan(5_000)
    } finally {
      await server.resume(publisher!)
    }

    const app = server.connect({ max: 1, connection: { application_name: 'stuck-app' } })
    const [appPid] = await app<{ pid: number }[]>`select pg_backend_pid() as pid`
    const inTransaction = app
      .begin(async (tx) => {
        await tx`select 1`
        await server.pause(appPid!.pid)
        try {
          await herald.publish(channel, 'in a stuck transaction', { tx })
        } finally {
          await server.resume(appPid!.pid)
        }
      })
      .catch((error: unknown) => error)
    expect(await inTransaction).toMatchObject({ code: 'TIMEOUT' })
  })

  it('keeps publishing while its own listener is down', async () => {
    await using a = await startedHerald({
      connection: server.url,
      reconnect: { minDelayMs: 1_000, maxDelayMs: 1_000 },
    })
    await using b = await startedHerald({ connection: server.url })
    const channel = uniqueName('pubdown')
    const received = await collect(b, channel)
    const disconnected = once(a, 'disconnected')
    await server.terminate(a.stats().backendPid)
    await disconnected
    await a.publish(channel, 'while down')
    await received.count(1)
  })
})
