import type { Herald } from '@herald/core'
import { ConfigStore } from '@herald/config'
import { InvalidatingCache } from '@herald/lru'
import { once, startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { startedHerald } from '../support/heralds.js'
import { locksOn } from '../support/locks.js'
import {
  activeTimers,
  Child,
  connectionsOf,
  expectNoConnections,
  expectNoTimers,
  failOnUnhandledRejection,
  probeRecovery,
  report,
  rounds,
} from './support.js'

// Kills backends and child processes: owns its server.
let server: PgServer

beforeAll(async () => {
  server = await startPostgres({ faults: true, label: 'chaos-processes' })
  // Tables up front, so the children's first run does not race the migration.
  await using warm = await locksOn(server.url, { applicationName: 'chaos-warm' })
  const name = uniqueName('warm')
  await (await warm.locks.acquire(name)).release()
})
afterAll(async () => {
  await server.close()
})
failOnUnhandledRejection()

describe('chaos: processes killed', () => {
  it(
    'a lock holder killed with SIGKILL: the waiter gets the lock within the sweep',
    { timeout: 60_000 },
    async () => {
      const timers = activeTimers()
      const sweepMs = 500
      const waits: number[] = []
      for (let round = 0; round < rounds(2, 6); round++) {
        const name = uniqueName('sigkill')
        await using holder = new Child('lock-holder.ts', [server.url, name, 'chaos-holder'])
        const token = BigInt(await holder.line('held '))
        {
          await using waiter = await locksOn(server.url, { applicationName: 'chaos-waiter', sweepMs })
          const watching = waiter.locks.waitForRelease(name, { timeoutMs: 10_000 }).then(() => Date.now())
          const waiting = waiter.locks.acquire(name, { timeoutMs: 10_000 })
          await waitFor(() => waiter.locks.stats().waiting >= 2)
          const killedAt = Date.now()
          holder.process.kill('SIGKILL')
          const lock = await waiting
          const waitedMs = Date.now() - killedAt
          waits.push(waitedMs)
          // No waiter left hanging, and the fencing token moved on.
          expect(lock.token).toBeGreaterThan(token)
          expect(waitedMs).toBeLessThan(sweepMs + 1_500)
          await lock.release()
          // waitForRelease may first have looked after our acquire took the lock (its check is a
          // query of its own): then it waited for our release, which has just happened.
          expect(await watching).toBeGreaterThanOrEqual(killedAt)
          expect(waiter.locks.stats()).toMatchObject({ held: 0, waiting: 0 })
        }
        expect((await holder.exited).signal).toBe('SIGKILL')
      }
      await expectNoConnections(server, 'chaos-holder')
      await expectNoConnections(server, 'chaos-waiter')
      await expectNoTimers(timers)
      report('lock-sigkill', {
        fault: `lock holder process killed with SIGKILL (sweepMs ${sweepMs}), ${waits.length} times`,
        recoveryMs: Math.max(...waits),
        measured: 'SIGKILL → waiter holds the lock (max over rounds)',
        invariant: 'no waiter left hanging; fencing token increases; no leaked connection or timer',
        result: 'held',
        details: { rounds: waits.length, waits },
      })
    },
  )

  it(
    "a publisher's connection killed mid-transaction: nothing from it is delivered, every Herald recovers",
    { timeout: 60_000 },
    async () => {
      const timers = activeTimers()
      const writer = server.connect({ max: 1, connection: { application_name: 'chaos-txkill-writer' } })
      const table = uniqueName('doomed')
      await writer`create table ${writer(table)} (k text primary key, v int not null)`
      await writer.end()
      const channel = uniqueName('txkill')
      const cacheName = uniqueName('cache')
      const namespace = uniqueName('ns')
      const a = await startedHerald({ connection: server.url, applicationName: 'chaos-txkill-a' })
      const b = await startedHerald({ connection: server.url, applicationName: 'chaos-txkill-b' })
      const closers: (() => Promise<void>)[] = []
      try {
        const delivered: unknown[] = []
        await b.subscribe(channel, (payload) => void delivered.push(payload))
        const cache = new InvalidatingCache<string>({ herald: b, name: cacheName, max: 100 })
        const config = new ConfigStore({
          herald: b,
          namespace,
          pollMs: 0,
          schema: { banner: z.string().optional() },
        })
        closers.push(
          () => cache.close(),
          () => config.close(),
        )
        await Promise.all([cache.ready(), config.start()])
        cache.set('doomed-key', 'kept')
        const evicted: string[] = []
        cache.on('evict', ({ key, reason }) => evicted.push(`${key}:${reason}`))

        await using child = new Child('tx-publisher.ts', [server.url, channel, cacheName, namespace, table])
        const txPid = Number(await child.line('in-tx '))
        // Kill the child's transaction, then every other backend too (the parent uses no
        // begin(), so it may lose all of its connections safely).
        const faultAt = Date.now()
        await server.terminate(txPid)
        const reconnected = [once(a, 'reconnected'), once(b, 'reconnected')]
        await server.terminate()
        await Promise.all(reconnected)
        const recoveryMs = await probeRecovery(a, b, uniqueName('probe'), faultAt)
        // A marker published after the fault: anything the dead transaction had committed would
        // have arrived before it.
        await a.publish(channel, { marker: true })
        await waitFor(() => delivered.length >= 1)
        expect(delivered).toEqual([{ marker: true }])
        const [row] = await server.sql<{ n: number }[]>`select count(*)::int as n from ${server.sql(table)}`
        expect(row?.n).toBe(0)
        expect(config.get('banner')).toBeUndefined()
        expect(config.version).toBe(0)
        // The cache flushed on reconnect (reason 'gap'), but nothing was invalidated by the dead transaction.
        expect(evicted.filter((entry) => !entry.endsWith(':gap'))).toEqual([])
        const outcome = await Promise.race([
          child.exited.then((exit) => `exited ${exit.code ?? exit.signal}`),
          child.line('rolled-back ', 5_000).then((line) => `rolled back: ${line.slice(0, 80)}`),
        ]).catch(() => 'still running')
        await child.kill()
        for (const close of closers.splice(0)) await close()
        await Promise.all([a.close(), b.close()])
        await expectNoConnections(server, 'chaos-txkill')
        await expectNoConnections(server, 'chaos-txpub')
        await expectNoTimers(timers)
        report('tx-kill', {
          fault: "publisher's connection killed mid-transaction (child process), then every backend",
          recoveryMs,
          measured: 'terminate → first message delivered after it',
          invariant:
            'nothing from the failed transaction delivered (message, invalidation, config); every Herald recovers',
          result: 'held',
          details: {
            child: outcome,
            childStderr: child.stderr.split('\n').find((line) => line.includes('Error')) ?? '',
            parentConnectionsLeft: await connectionsOf(server, 'chaos-txkill'),
          },
        })
      } finally {
        for (const close of closers) await close()
        await Promise.all([a, b].map((herald: Herald) => herald.close()))
      }
    },
  )
})
