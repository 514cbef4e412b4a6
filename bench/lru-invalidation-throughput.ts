/**
 * Invalidation throughput across instances: keys invalidated by one instance until each has
 * left the caches of three others (each its own process), against the naive way to do it
 * with the same driver, one `pg_notify` per key.
 */
import { uniqueName } from '@herald/testing'
import postgres from 'postgres'
import type { Benchmark, BenchContext, RepeatedResult } from './lib/benchmark.js'
import { Child } from './lib/child.js'
import { openCache, type OpenCache } from './lib/open-cache.js'
import { compare, figures, interleave } from './lib/repetitions.js'
import { median } from './lib/stats.js'
import { makeUser } from './lib/users.js'
import {
  roundKey,
  type FromReceiver,
  type InvalidationMode,
  type ToReceiver,
} from './lru-invalidation-messages.js'

const RECEIVER = 'bench/lru-invalidation-receiver.ts'
const RECEIVERS = 3
const KEYS = 20_000
const QUICK_KEYS = 2_000
/** Concurrent `invalidate(key)` calls per batch: what the coalescing publisher gets to merge. */
const BATCH = 1_000
/** Rounds thrown away first: pool connections, prepared statements, JIT. */
const DISCARD = 1
/** The goal: at least 10× the keys/s of one NOTIFY per key. */
const TARGET_RATIO = 10
/** Spawning, tsx compiling, two connections and two LISTENs per receiver. */
const READY_TIMEOUT_MS = 60_000
/** Filling the receivers' caches takes milliseconds; a round at the baseline's pace, seconds. */
const ROUND_TIMEOUT_MS = 300_000
const MODES: readonly InvalidationMode[] = ['heraldBatched', 'heraldArray', 'raw']

export const lruInvalidationThroughput: Benchmark = {
  name: 'lru-invalidation-throughput',
  plan: (context) =>
    `${context.repetitions} repetitions per contender after ${DISCARD} discarded, ` +
    `${keyCount(context).toLocaleString('en-US')} keys each, ${RECEIVERS} receiving processes`,
  run,
}

function keyCount(context: BenchContext): number {
  return context.quick ? QUICK_KEYS : KEYS
}

async function run(context: BenchContext): Promise<RepeatedResult> {
  const keys = keyCount(context)
  const channel = uniqueName('bench_inv')
  const rawChannel = uniqueName('bench_inv_raw')
  const receivers = Array.from({ length: RECEIVERS }, () => new Child<ToReceiver, FromReceiver>(RECEIVER))
  let opened: OpenCache | undefined
  // The raw contender's client: postgres.js defaults (up to 10 connections, so its NOTIFYs
  // run on 10 connections at once), as an app would issue them.
  const sql = postgres(context.url, {
    onnotice: () => {},
    connection: { application_name: 'bench-invalidation-raw' },
  })
  try {
    for (const receiver of receivers) {
      receiver.send({ type: 'start', url: context.url, channel, rawChannel, max: 2 * keys })
    }
    opened = await openCache(context.url, { applicationName: 'bench-invalidation', max: 2 * keys, channel })
    const { herald, cache } = opened
    const failure = Promise.race([opened.failure, ...receivers.map((receiver) => receiver.failure)])
    await Promise.race([
      Promise.all(receivers.map((receiver) => receiver.receive('ready', READY_TIMEOUT_MS))),
      failure,
    ])
    const notifies: Record<InvalidationMode, number[]> = { heraldBatched: [], heraldArray: [], raw: [] }
    let sequence = 0
    const measured = await interleave(
      MODES,
      { repetitions: context.repetitions, discard: DISCARD },
      async (mode) => {
        const round = sequence++
        const roundKeys = Array.from({ length: keys }, (_, id) => roundKey(round, id))
        for (const receiver of receivers) receiver.send({ type: 'fill', round, mode, keys })
        // The invalidating instance caches them too, so its own invalidate evicts real entries.
        if (mode !== 'raw') roundKeys.forEach((key, id) => cache.set(key, makeUser(id)))
        await Promise.race([
          Promise.all(receivers.map((receiver) => receiver.receive('filled', ROUND_TIMEOUT_MS))),
          failure,
        ])
        const notifiesBefore = herald.stats().notifies
        const startedAt = performance.now()
        const evicted = Promise.all(
          receivers.map((receiver) => receiver.receive('evicted', ROUND_TIMEOUT_MS)),
        )
        await Promise.race([Promise.all([invalidate(mode, roundKeys), evicted]), failure])
        const elapsedMs = performance.now() - startedAt
        notifies[mode].push(mode === 'raw' ? keys : herald.stats().notifies - notifiesBefore)
        return keys / (elapsedMs / 1000)
      },
    )
    const rounds = sequence
    const stats = cache.stats()
    for (const receiver of receivers) receiver.send({ type: 'stop' }, { last: true })
    const stopped = await Promise.all(
      receivers.map((receiver) => receiver.receive('stopped', READY_TIMEOUT_MS)),
    )
    const rawRounds = rounds / MODES.length
    for (const report of stopped) {
      if (report.rawNotifications !== rawRounds * keys) {
        throw new Error(`a receiver got ${report.rawNotifications} raw NOTIFYs of ${rawRounds * keys} sent`)
      }
    }
    return {
      kind: 'repeated',
      name: 'lru-invalidation-throughput',
      title: 'Invalidation throughput: one instance invalidates, three others evict',
      method:
        `${keys.toLocaleString('en-US')} keys per repetition, cached by ${RECEIVERS} receiving instances ` +
        '(each its own process with its own Herald and InvalidatingCache, or postgres.js sql.listen and a Map ' +
        'for the baseline) and by the invalidating one; timed from the first invalidation until every ' +
        'receiver has reported (over IPC) that its last key left; keys/s. Herald batched: ' +
        `Promise.all of ${BATCH.toLocaleString('en-US')} cache.invalidate(key) calls at a time; Herald array: ` +
        'one cache.invalidate(keys); baseline: one sql.notify(channel, key) per key, all issued at once ' +
        '(Promise.all, default pool of 10 connections).',
      unit: { name: 'keys/s', better: 'higher' },
      repetitions: measured.raw.length,
      discarded: DISCARD,
      contenders: [
        {
          id: 'heraldBatched',
          name: 'Herald batched',
          label: `Herald: ${BATCH.toLocaleString('en-US')} × invalidate(key) at a time`,
          figures: figures(measured.heraldBatched),
        },
        {
          id: 'heraldArray',
          name: 'Herald array',
          label: 'Herald: invalidate(keys), one call',
          figures: figures(measured.heraldArray),
        },
        {
          id: 'raw',
          name: 'NOTIFY per key',
          label: 'postgres.js: sql.notify per key',
          figures: figures(measured.raw),
        },
      ],
      comparisons: [
        compare(measured, 'heraldBatched', 'raw', { bound: 'atLeast', value: TARGET_RATIO }),
        compare(measured, 'heraldArray', 'raw', { bound: 'atLeast', value: TARGET_RATIO }),
      ],
      checks: {
        keysPerRepetition: keys,
        receivers: RECEIVERS,
        rounds,
        // NOTIFYs per round (median): coalescing at work, 1 per key for the baseline.
        heraldBatchedNotifiesPerRound: median(notifies.heraldBatched),
        heraldArrayNotifiesPerRound: median(notifies.heraldArray),
        rawNotifiesPerRound: median(notifies.raw),
        invalidationsSent: stats.invalidationsSent,
        // Every receiver applied every message and got every raw NOTIFY.
        receiverInvalidationsReceivedMin: Math.min(...stopped.map((report) => report.invalidationsReceived)),
        receiverHeraldNotificationsMin: Math.min(...stopped.map((report) => report.heraldNotifications)),
        receiverRawNotificationsMin: Math.min(...stopped.map((report) => report.rawNotifications)),
      },
    }

    async function invalidate(mode: InvalidationMode, roundKeys: readonly string[]): Promise<void> {
      if (mode === 'heraldArray') return cache.invalidate(roundKeys)
      if (mode === 'heraldBatched') {
        for (let start = 0; start < roundKeys.length; start += BATCH) {
          await Promise.all(roundKeys.slice(start, start + BATCH).map((key) => cache.invalidate(key)))
        }
        return
      }
      await Promise.all(roundKeys.map((key) => sql.notify(rawChannel, key)))
    }
  } catch (error) {
    await Promise.all(receivers.map((receiver) => receiver.kill()))
    throw error
  } finally {
    await Promise.all([opened?.[Symbol.asyncDispose](), sql.end({ timeout: 1 })])
    for (const receiver of receivers) {
      if ((await receiver.close()) === 'killed') {
        console.warn(`${RECEIVER} did not exit after closing everything; it was killed`)
      }
    }
  }
}
