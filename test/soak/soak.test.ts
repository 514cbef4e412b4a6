/**
 * Soak: four instances (each a Herald and an InvalidatingCache in flush mode, in this
 * process) invalidate keys without pause for HERALD_SOAK_MS (60 s in the normal suite,
 * `pnpm soak` runs 10 minutes), while a few listeners are terminated. At the end:
 *
 * - RSS and heapUsed are flat: the second half's average against the first half's, after a
 *   forced GC per sample (heap skipped, with a message, when no GC can be forced);
 * - `pg_notification_queue_usage()` is near zero: nothing piles up in the server's queue;
 * - every invalidation is accounted for: each key another instance cached was evicted there,
 *   either by the invalidation message or by the flush that follows a gap, and every gap
 *   ('disconnected' … 'reconnected') was followed by a flush.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import v8 from 'node:v8'
import vm from 'node:vm'
import type { Herald } from '@herald/core'
import type { InvalidatingCache } from '@herald/lru'
import { once, startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import type postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readyCache } from '../support/caches.js'
import { startedHerald } from '../support/heralds.js'

const SOAK_MS = Number(process.env['HERALD_SOAK_MS'] ?? 60_000)
const INSTANCES = 4
/** Keys each instance invalidates per tick, each with its own `invalidate(key)` call. */
const KEYS_PER_TICK = 20
const TICK_MS = 20
/** Listener terminations spread over the run. */
const TERMINATIONS = 3
const SAMPLE_MS = 500
/** Samples before this much of the run are warm-up (JIT, pools, first LISTENs). */
const WARMUP_SHARE = 0.1
const RSS_SLACK_BYTES = 20 * 1024 * 1024
const RELATIVE_SLACK = 0.3
const QUEUE_USAGE_MAX = 0.01

if (!Number.isFinite(SOAK_MS) || SOAK_MS < 1_000)
  throw new Error(`HERALD_SOAK_MS must be ≥ 1000, got ${SOAK_MS}`)

// Terminates listener connections: owns its server.
let server: PgServer
let sql: postgres.Sql

beforeAll(async () => {
  server = await startPostgres({ faults: true, label: 'soak' })
  sql = server.connect({ max: 1, connection: { application_name: 'soak-probe' } })
})
afterAll(async () => {
  await server.close()
})

/** `gc` from --expose-gc, or switched on at run time; undefined if neither works. */
function forcedGc(): (() => void) | undefined {
  const exposed = (globalThis as { gc?: () => void }).gc
  if (typeof exposed === 'function') return exposed
  try {
    v8.setFlagsFromString('--expose-gc')
    const gc = vm.runInNewContext('gc') as unknown
    return typeof gc === 'function' ? (gc as () => void) : undefined
  } catch {
    return undefined
  }
}

interface Sample {
  readonly at: number
  readonly rss: number
  readonly heapUsed: number
}

interface Growth {
  readonly first: number
  readonly second: number
  readonly ok: boolean
}

/** Second half's average against the first half's, after the warm-up share. */
function growth(samples: readonly Sample[], field: 'rss' | 'heapUsed', startedAt: number): Growth {
  const kept = samples.filter((sample) => sample.at - startedAt >= SOAK_MS * WARMUP_SHARE)
  const half = Math.floor(kept.length / 2)
  const average = (list: readonly Sample[]): number =>
    list.reduce((total, sample) => total + sample[field], 0) / list.length
  const first = average(kept.slice(0, half))
  const second = average(kept.slice(half))
  return { first, second, ok: second - first <= RSS_SLACK_BYTES || second <= first * (1 + RELATIVE_SLACK) }
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`
}

/** What one instance saw as a receiver of the other instances' invalidations. */
interface Receiver {
  /** Keys cached here whose eviction has not been seen yet. */
  readonly outstanding: Set<string>
  /** Keys other instances invalidated that were cached here. */
  cached: number
  /** Keys this cache refused to cache (not live: in a gap), so nothing to evict. */
  refused: number
  /** Evicted by an invalidation message. */
  received: number
  /** Evicted by the flush after a gap. */
  flushedKeys: number
  /** Invalidations other instances sent while this one was in a gap. */
  sentDuringGap: number
  gaps: number
  reconnects: number
  gapFlushes: number
  inGap: boolean
}

describe('soak', () => {
  it(
    `${INSTANCES} instances, sustained invalidations for ${SOAK_MS / 1000} s with listener terminations: memory flat, queue empty, nothing lost`,
    { timeout: SOAK_MS + 180_000 },
    async () => {
      const gc = forcedGc()
      const name = uniqueName('soak')
      const heralds: Herald[] = []
      const caches: InvalidatingCache<{ id: number }>[] = []
      const receivers: Receiver[] = []
      const errors: string[] = []
      try {
        for (let index = 0; index < INSTANCES; index++) {
          const herald = await startedHerald({
            connection: server.url,
            applicationName: `soak-${index}`,
            reconnect: { minDelayMs: 50, maxDelayMs: 500 },
          })
          herald.on('error', (error) => errors.push(`herald ${index}: ${error.code} ${error.message}`))
          heralds.push(herald)
          const cache = await readyCache<{ id: number }>(herald, { name, max: 1_000_000 })
          cache.on('error', (error) => errors.push(`cache ${index}: ${error.message}`))
          caches.push(cache)
          const receiver: Receiver = {
            outstanding: new Set(),
            cached: 0,
            refused: 0,
            received: 0,
            flushedKeys: 0,
            sentDuringGap: 0,
            gaps: 0,
            reconnects: 0,
            gapFlushes: 0,
            inGap: false,
          }
          receivers.push(receiver)
          herald.on('disconnected', () => {
            receiver.gaps++
            receiver.inGap = true
          })
          herald.on('reconnected', () => {
            receiver.reconnects++
          })
          cache.on('flush', ({ reason }) => {
            if (reason === 'gap') {
              receiver.gapFlushes++
              receiver.inGap = false
            }
          })
          cache.on('evict', ({ key, reason }) => {
            if (!receiver.outstanding.delete(key)) return
            if (reason === 'invalidate') receiver.received++
            else if (reason === 'gap') receiver.flushedKeys++
            else errors.push(`cache ${index}: ${key} left by '${reason}'`)
          })
        }

        const samples: Sample[] = []
        const startedAt = performance.now()
        const end = startedAt + SOAK_MS
        const sampler = setInterval(() => {
          gc?.()
          const { rss, heapUsed } = process.memoryUsage()
          samples.push({ at: performance.now(), rss, heapUsed })
        }, SAMPLE_MS)
        const terminations = Array.from(
          { length: TERMINATIONS },
          (_, index) => startedAt + (SOAK_MS * (index + 1)) / (TERMINATIONS + 1),
        )
        let sent = 0
        let terminated = 0
        const sequence = new Array<number>(INSTANCES).fill(0)
        try {
          while (performance.now() < end) {
            const due = terminations[terminated]
            if (due !== undefined && performance.now() >= due) {
              const victim = heralds[terminated % INSTANCES] as Herald
              const disconnected = once(victim, 'disconnected')
              await server.terminate(victim.stats().backendPid)
              await disconnected
              terminated++
            }
            await Promise.all(
              caches.map((cache, sender) => {
                const calls: Promise<void>[] = []
                for (let n = 0; n < KEYS_PER_TICK; n++) {
                  const key = `${sender}:${sequence[sender]}`
                  sequence[sender] = (sequence[sender] ?? 0) + 1
                  receivers.forEach((receiver, index) => {
                    if (index === sender) return
                    if (receiver.inGap) receiver.sentDuringGap++
                    if ((caches[index] as InvalidatingCache<{ id: number }>).set(key, { id: n })) {
                      receiver.cached++
                      receiver.outstanding.add(key)
                    } else {
                      receiver.refused++
                    }
                  })
                  calls.push(cache.invalidate(key))
                  sent++
                }
                return Promise.all(calls)
              }),
            )
            await sleep(TICK_MS)
          }
        } finally {
          clearInterval(sampler)
        }

        // Every instance live again, and every cached key evicted.
        await waitFor(() => caches.every((cache) => cache.stats().live), {
          timeoutMs: 30_000,
          message: 'an instance did not come back',
        })
        await waitFor(() => receivers.every((receiver) => receiver.outstanding.size === 0), {
          timeoutMs: 30_000,
          message: `keys never evicted: ${receivers.map((receiver) => receiver.outstanding.size).join(', ')}`,
        })
        const [queue] = await sql<{ usage: number }[]>`select pg_notification_queue_usage() as usage`
        const rss = growth(samples, 'rss', startedAt)
        const heap = growth(samples, 'heapUsed', startedAt)
        const summary = {
          soakMs: SOAK_MS,
          invalidationsSent: sent,
          terminations: terminated,
          samples: samples.length,
          forcedGc: gc !== undefined,
          rss: `${mb(rss.first)} → ${mb(rss.second)}`,
          heapUsed: `${mb(heap.first)} → ${mb(heap.second)}`,
          queueUsage: queue?.usage,
          receivers: receivers.map(({ outstanding, ...counts }) => ({
            ...counts,
            outstanding: outstanding.size,
          })),
          notifies: heralds.map((herald) => herald.stats().notifies),
        }
        console.log(`soak: ${JSON.stringify(summary, null, 2)}`)

        expect(errors).toEqual([])
        expect(terminated).toBe(TERMINATIONS)
        for (const receiver of receivers) {
          // Every key another instance invalidated was either cached here and evicted (by the
          // message or by the gap's flush), or refused because this instance was in a gap.
          expect(receiver.cached + receiver.refused).toBe((sent * (INSTANCES - 1)) / INSTANCES)
          expect(receiver.received + receiver.flushedKeys).toBe(receiver.cached)
          expect(receiver.refused).toBeLessThanOrEqual(receiver.sentDuringGap)
          // Every gap was announced, ended and flushed.
          expect(receiver.reconnects).toBe(receiver.gaps)
          expect(receiver.gapFlushes).toBeGreaterThanOrEqual(receiver.gaps)
          // Outside gaps, the messages arrive: only the gaps' flushes account for the rest.
          if (receiver.gaps === 0) expect(receiver.flushedKeys).toBe(0)
        }
        expect(queue?.usage ?? 1).toBeLessThan(QUEUE_USAGE_MAX)
        expect(rss.ok, `RSS grew ${mb(rss.first)} → ${mb(rss.second)}`).toBe(true)
        if (gc === undefined) {
          console.warn('soak: no forced GC available (run node with --expose-gc); heapUsed assertion skipped')
        } else {
          expect(heap.ok, `heapUsed grew ${mb(heap.first)} → ${mb(heap.second)}`).toBe(true)
        }
      } finally {
        await Promise.all(caches.map((cache) => cache.close()))
        await Promise.all(heralds.map((herald) => herald.close()))
      }
    },
  )
})
