import type { ReconnectedEvent } from '@herald/core'
import { once, startPostgres, uniqueName, type PgServer } from '@herald/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  activeTimers,
  expectNoTimers,
  failOnUnhandledRejection,
  probeRecovery,
  report,
  rounds,
} from './support.js'
import { finishWorkload, startWorkload } from './workload.js'

// Restarts the server, kills and pauses backends: owns its server.
let server: PgServer

beforeAll(async () => {
  server = await startPostgres({ faults: true, label: 'chaos-faults' })
})
afterAll(async () => {
  await server.close()
})
failOnUnhandledRejection()

const INVARIANT = 'no stale cache entry, no missed config version, no leaked connection or timer'

describe('chaos: server faults under load', () => {
  it('Postgres restarted mid-stream', { timeout: 60_000 }, async () => {
    const timers = activeTimers()
    const prefix = 'chaos-restart'
    const load = await startWorkload(server, prefix)
    const downMs = rounds(500, 2_000)
    const recoveries: number[] = []
    try {
      for (let round = 0; round < rounds(1, 3); round++) {
        await load.progress()
        const reconnected = once<ReconnectedEvent>(load.b, 'reconnected', { timeoutMs: 30_000 })
        const faultAt = Date.now()
        await server.restart({ downMs })
        await reconnected
        recoveries.push(await probeRecovery(load.a, load.b, uniqueName('probe'), faultAt))
      }
      const invariant = await finishWorkload(load, server, prefix)
      expect(load.writes).toBeGreaterThan(0)
      await expectNoTimers(timers)
      report('restart', {
        fault: `Postgres restarted mid-stream (fast shutdown, down ${downMs} ms), publishing continuously`,
        recoveryMs: Math.max(...recoveries),
        measured: 'stop → first message delivered after it (includes the downtime)',
        invariant: INVARIANT,
        result: 'held',
        details: { rounds: recoveries.length, recoveries, ...invariant },
      })
    } finally {
      await load.close()
    }
  })

  it('every backend terminated repeatedly', { timeout: 60_000 }, async () => {
    const timers = activeTimers()
    const prefix = 'chaos-terminate'
    const load = await startWorkload(server, prefix)
    const recoveries: number[] = []
    try {
      for (let round = 0; round < rounds(5, 20); round++) {
        await load.progress(5)
        const reconnected = once(load.b, 'reconnected')
        const faultAt = Date.now()
        expect(await server.terminate()).toBeGreaterThanOrEqual(2)
        await reconnected
        recoveries.push(await probeRecovery(load.a, load.b, uniqueName('probe'), faultAt))
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
      const invariant = await finishWorkload(load, server, prefix)
      await expectNoTimers(timers)
      const sorted = [...recoveries].sort((x, y) => x - y)
      report('terminate', {
        fault: `every backend terminated (pg_terminate_backend), ${recoveries.length} times`,
        recoveryMs: Math.max(...recoveries),
        measured: 'terminate → first message delivered after it (max over rounds)',
        invariant: INVARIANT,
        result: 'held',
        details: {
          rounds: recoveries.length,
          medianMs: sorted[Math.floor(sorted.length / 2)],
          recoveries,
          ...invariant,
        },
      })
    } finally {
      await load.close()
    }
  })

  it('listener backend SIGSTOPped (half-open), then resumed', { timeout: 60_000 }, async () => {
    const timers = activeTimers()
    const prefix = 'chaos-pause'
    const heartbeatMs = 1_000
    const load = await startWorkload(server, prefix, { heartbeatMs })
    const recoveries: number[] = []
    try {
      for (let round = 0; round < rounds(1, 4); round++) {
        await load.progress()
        const pid = load.b.stats().backendPid as number
        const disconnected = once(load.b, 'disconnected')
        const faultAt = Date.now()
        await server.pause(pid)
        await disconnected
        const detectedMs = Date.now() - faultAt
        expect(detectedMs).toBeLessThan(heartbeatMs + 1_500)
        recoveries.push(await probeRecovery(load.a, load.b, uniqueName('probe'), faultAt))
        await server.resume(pid)
      }
      const invariant = await finishWorkload(load, server, prefix)
      await expectNoTimers(timers)
      report('sigstop', {
        fault: `listener backend SIGSTOPped (half-open TCP), heartbeatMs ${heartbeatMs}, then resumed`,
        recoveryMs: Math.max(...recoveries),
        measured: 'SIGSTOP → first message delivered after it (heartbeat detection + reconnect)',
        invariant: INVARIANT,
        result: 'held',
        details: { rounds: recoveries.length, recoveries, ...invariant },
      })
    } finally {
      await load.close()
    }
  })
})
