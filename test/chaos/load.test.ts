import { startPostgres, uniqueName, type PgServer } from '@herald/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { IpcChild, type LoadFigures } from './load-support.js'
import { expectNoConnections, failOnUnhandledRejection, LONG, report } from './support.js'

/**
 * Load: 8 processes, each with its own Herald and a durable InvalidatingCache of one name,
 * each invalidating its own unique keys (`p<process>:<seq>`) at a steady rate while the
 * listener backends of random processes are terminated about every second.
 *
 * How each instance counts (children/load-instance.ts):
 * - Before anyone publishes, it caches every key the other processes will invalidate, so each
 *   of their invalidations is observable as exactly one `evict` event of reason 'invalidate'
 *   (a second apply, from a NOTIFY and a poll both, finds the key gone and emits nothing).
 * - The cache's NOTIFY handler is wrapped (at `herald.subscribe`) to mark the span in which it
 *   runs; the handler applies a message synchronously, so an eviction inside that span was
 *   delivered live. The only other path that applies a key is the durable log read (the replay
 *   after a gap, or the poll every `pollMs`): those evictions are recovered.
 * - sent by others = the other processes' distinct keys in `herald.cache_invalidations` once
 *   every publisher has finished (each invalidate is retried until it succeeds, so that is all of
 *   them; the test also checks it equals what they sent). lost = sent − delivered − recovered,
 *   taken after publishing and the faults stopped, the instance is live, and two polls ran.
 * - Cross-checks against the cache's own stats: delivered ≤ invalidationsReceived and
 *   recovered ≤ replayedRows (both deltas over the run); no flush (durable mode replays).
 */
const PROCESSES = 8
const LOAD_MS = Number(process.env['HERALD_CHAOS_LOAD_MS'] ?? (LONG ? 60_000 : 10_000))
const RATE_PER_PROCESS = 25 // invalidations per second
const INTERVAL_MS = 1_000 / RATE_PER_PROCESS
const KEYS_PER_PROCESS = Math.round(LOAD_MS / INTERVAL_MS)
const KILL_EVERY_MS = 1_000

let server: PgServer

beforeAll(async () => {
  server = await startPostgres({ faults: true, label: 'chaos-load' })
})
afterAll(async () => {
  await server.close()
})
failOnUnhandledRejection()

describe('chaos: load', () => {
  it(
    `${PROCESSES} processes × sustained durable invalidations, listeners killed every ~1 s: none lost`,
    { timeout: LOAD_MS + 90_000 },
    async () => {
      const cacheName = uniqueName('load')
      const children = Array.from(
        { length: PROCESSES },
        (_, index) =>
          new IpcChild('load-instance.ts', [
            server.url,
            String(index),
            String(PROCESSES),
            cacheName,
            String(KEYS_PER_PROCESS),
            String(INTERVAL_MS),
          ]),
      )
      try {
        const ready = await Promise.all(children.map((child) => child.message('ready', 60_000)))
        for (const message of ready) {
          expect(message.notStored).toBe(0)
          expect(message.preset).toBe((PROCESSES - 1) * KEYS_PER_PROCESS)
        }
        for (const child of children) child.send({ type: 'go' })
        const startedAt = Date.now()

        // Faults: every ~second, the listener backends of 1 to 3 random processes.
        let publishing = true
        let kills = 0
        let killRounds = 0
        const published = Promise.all(children.map((child) => child.message('published', LOAD_MS + 60_000)))
        void published.finally(() => (publishing = false)).catch(() => {})
        while (publishing) {
          await new Promise((resolve) => setTimeout(resolve, KILL_EVERY_MS * (0.75 + Math.random() / 2)))
          if (!publishing) break
          const victims = [...children.keys()]
            .sort(() => Math.random() - 0.5)
            .slice(0, 1 + Math.floor(Math.random() * 3))
          killRounds++
          for (const victim of victims)
            kills += await server.terminate({ applicationName: `chaos-load-${victim}-listener` })
        }
        const sent = await published
        const publishMs = Date.now() - startedAt

        for (const child of children) child.send({ type: 'finish' })
        const figures: LoadFigures[] = []
        for (const child of children) figures.push(await child.message('result', 30_000))
        const exits = await Promise.all(children.map((child) => child.exited))

        const total = (pick: (figure: LoadFigures) => number) => figures.reduce((sum, f) => sum + pick(f), 0)
        const invalidationsSent = sent.reduce((sum, message) => sum + message.sent, 0)
        const summary = {
          processes: PROCESSES,
          loadMs: LOAD_MS,
          ratePerProcess: RATE_PER_PROCESS,
          invalidationsSent,
          publishRetries: sent.reduce((sum, message) => sum + message.retries, 0),
          publishMs,
          listenerKills: kills,
          killRounds,
          expectedDeliveries: total((f) => f.sentByOthers),
          delivered: total((f) => f.delivered),
          recovered: total((f) => f.recovered),
          lost: total((f) => f.lost),
          replays: total((f) => f.replays),
        }
        console.log(`[chaos] load per process: ${JSON.stringify(figures)}`)

        for (const f of figures) {
          expect(f.sentByOthers, `process ${f.index}: others' keys in the log`).toBe(
            (PROCESSES - 1) * KEYS_PER_PROCESS,
          )
          expect(f.lost, `process ${f.index} lost ${f.lostSample.join(', ')}`).toBe(0)
          expect(f.delivered + f.recovered).toBe(f.sentByOthers)
          expect(f.unexpected).toBe(0)
          expect(f.delivered).toBeLessThanOrEqual(f.invalidationsReceived)
          expect(f.recovered).toBeLessThanOrEqual(f.replayedRows)
          // Durable mode replays after a gap instead of flushing.
          expect(f.flushes).toBe(0)
          expect(f.otherEvictions).toEqual({})
          expect(f.unhandled).toEqual([])
        }
        expect(exits.map((exit) => exit.code)).toEqual(children.map(() => 0))
        expect(invalidationsSent).toBe(PROCESSES * KEYS_PER_PROCESS)
        // The faults bit: listeners were cut, and some invalidations only arrived through the log.
        expect(kills).toBeGreaterThan(0)
        expect(summary.recovered).toBeGreaterThan(0)
        await expectNoConnections(server, 'chaos-load')

        report('load', {
          fault: `${PROCESSES} processes × ${RATE_PER_PROCESS} invalidations/s each for ${Math.round(LOAD_MS / 1000)} s (durable, pollMs 500), listener backends of 1–3 random processes terminated every ~1 s (${kills} kills)`,
          recoveryMs: null,
          measured: `${invalidationsSent} invalidations sent, ${summary.expectedDeliveries} deliveries due (to the 7 other processes): ${summary.delivered} delivered live, ${summary.recovered} recovered from the log, ${summary.lost} lost`,
          invariant: 'lost = 0 on every process; no flush; no leaked connection',
          result: 'held',
          details: { ...summary, perProcess: figures },
        })
      } finally {
        await Promise.all(children.map((child) => child.kill()))
      }
    },
  )
})
