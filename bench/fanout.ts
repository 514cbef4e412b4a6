/**
 * Fan-out: one publisher, eight listening processes (three in a quick run), each with its own
 * Herald and InvalidatingCache (and a postgres.js listener for the baseline, and a pg-listen
 * subscriber for the peer).
 *
 * - `fanout`: latency to the LAST receiver of a message, one message in flight. The publisher
 *   records the send time and every receiver the receipt time, both as
 *   `performance.timeOrigin + performance.now()` (the same machine clock in every process);
 *   a sample is the latest receipt minus the send.
 * - `fanout-throughput`: keys/s invalidated by the publisher until every receiver has evicted
 *   the round's last key.
 *
 * Two benchmarks, not one, because a result is either percentiles or repeated rates; both
 * spawn their own receivers.
 */
import { uniqueName } from '@herald/testing'
import postgres from 'postgres'
import {
  fanoutKey,
  type FanoutContender,
  type FanoutPing,
  type FromReceiver,
  type ToReceiver,
} from './fanout-messages.js'
import type { Benchmark, BenchContext, LatencyResult, RepeatedResult } from './lib/benchmark.js'
import { Child } from './lib/child.js'
import { openCache, type OpenCache } from './lib/open-cache.js'
import { openPgListen, type PgListen } from './lib/pg-listen.js'
import { compare, figures, interleave } from './lib/repetitions.js'
import { shuffled } from './lib/shuffled.js'
import { median, summarize } from './lib/stats.js'
import { withTimeout } from './lib/timeout.js'

const RECEIVER = 'bench/fanout-receiver.ts'
const RECEIVERS = 8
const QUICK_RECEIVERS = 3
/** Two cores for nine processes and the server: a modest sample count keeps the run short. */
const MAX_SAMPLES = 500
const MAX_WARMUP = 50
const KEYS = 10_000
const QUICK_KEYS = 2_000
/** Concurrent `invalidate(key)` calls per batch: what the coalescing publisher gets to merge. */
const BATCH = 1_000
const DISCARD = 1
/** Spawning, tsx compiling, four connections and five LISTENs per receiver, on 2 cores. */
const READY_TIMEOUT_MS = 120_000
const SAMPLE_TIMEOUT_MS = 5_000
const ROUND_TIMEOUT_MS = 300_000
const CONTENDERS: readonly FanoutContender[] = ['herald', 'raw', 'pgListen']

interface Fleet extends AsyncDisposable {
  readonly receivers: readonly Child<ToReceiver, FromReceiver>[]
  readonly opened: OpenCache
  readonly sql: postgres.Sql
  readonly pgListen: PgListen
  readonly failure: Promise<never>
  readonly channels: Omit<Extract<ToReceiver, { type: 'start' }>, 'type' | 'url' | 'max'>
  stop(): Promise<Extract<FromReceiver, { type: 'stopped' }>[]>
}

function receiverCount(context: BenchContext): number {
  return context.quick ? QUICK_RECEIVERS : RECEIVERS
}

function sampleCount(context: BenchContext): { samples: number; warmup: number } {
  return { samples: Math.min(context.samples, MAX_SAMPLES), warmup: Math.min(context.warmup, MAX_WARMUP) }
}

function keyCount(context: BenchContext): number {
  return context.quick ? QUICK_KEYS : KEYS
}

export const fanout: Benchmark = {
  name: 'fanout',
  plan: (context) => {
    const { samples, warmup } = sampleCount(context)
    return `${samples} samples per contender after ${warmup} warm-up, ${receiverCount(context)} receiving processes`
  },
  run: runLatency,
}

export const fanoutThroughput: Benchmark = {
  name: 'fanout-throughput',
  plan: (context) =>
    `${context.repetitions} repetitions per contender after ${DISCARD} discarded, ` +
    `${keyCount(context).toLocaleString('en-US')} keys each, ${receiverCount(context)} receiving processes`,
  run: runThroughput,
}

/** Spawns the receivers and the publisher's Herald, cache, postgres.js client and pg-listen subscriber. */
async function openFleet(context: BenchContext, max: number): Promise<Fleet> {
  const channels = {
    heraldPing: uniqueName('bench_fan_ping'),
    rawPing: uniqueName('bench_fan_ping_raw'),
    cacheChannel: uniqueName('bench_fan_inv'),
    rawKeys: uniqueName('bench_fan_inv_raw'),
    pgListenPing: uniqueName('bench_fan_ping_pgl'),
    pgListenKeys: uniqueName('bench_fan_inv_pgl'),
  }
  const receivers = Array.from(
    { length: receiverCount(context) },
    () => new Child<ToReceiver, FromReceiver>(RECEIVER),
  )
  // postgres.js defaults (up to 10 connections), as an app would issue its NOTIFYs.
  const sql = postgres(context.url, {
    onnotice: () => {},
    connection: { application_name: 'bench-fanout-raw' },
  })
  let opened: OpenCache | undefined
  let pgListen: PgListen | undefined
  const close = async (): Promise<void> => {
    await Promise.all([opened?.[Symbol.asyncDispose](), sql.end({ timeout: 1 }), pgListen?.close()])
    for (const receiver of receivers) {
      if ((await receiver.close()) === 'killed')
        console.warn(`${RECEIVER} did not exit after closing; killed`)
    }
  }
  try {
    for (const receiver of receivers) receiver.send({ type: 'start', url: context.url, max, ...channels })
    opened = await openCache(context.url, {
      applicationName: 'bench-fanout',
      max,
      channel: channels.cacheChannel,
    })
    // Listens on nothing: the publisher only sends through it, on its one connection.
    pgListen = await openPgListen(context.url, 'bench-fanout-pg-listen')
    const failure = Promise.race([
      opened.failure,
      pgListen.failure,
      ...receivers.map((receiver) => receiver.failure),
    ])
    failure.catch(() => {})
    await Promise.race([
      Promise.all(receivers.map((receiver) => receiver.receive('ready', READY_TIMEOUT_MS))),
      failure,
    ])
    return {
      receivers,
      opened,
      sql,
      pgListen,
      failure,
      channels,
      stop: async () => {
        for (const receiver of receivers) receiver.send({ type: 'stop' }, { last: true })
        return Promise.all(receivers.map((receiver) => receiver.receive('stopped', READY_TIMEOUT_MS)))
      },
      [Symbol.asyncDispose]: close,
    }
  } catch (error) {
    await Promise.all(receivers.map((receiver) => receiver.kill()))
    await close()
    throw error
  }
}

function now(): number {
  return performance.timeOrigin + performance.now()
}

async function runLatency(context: BenchContext): Promise<LatencyResult> {
  const { samples, warmup } = sampleCount(context)
  const fleet = await openFleet(context, 1_000)
  try {
    const { receivers, opened, sql, channels } = fleet
    const herald = opened.herald
    const { subscriber } = fleet.pgListen
    const send: Record<FanoutContender, (ping: FanoutPing) => Promise<void>> = {
      herald: (ping) => herald.publish(channels.heraldPing, ping),
      raw: async (ping) => {
        await sql.notify(channels.rawPing, JSON.stringify(ping))
      },
      // pg-listen serializes the object itself (JSON.stringify, its default).
      pgListen: async (ping) => {
        await subscriber.notify(channels.pgListenPing, ping)
      },
    }
    const latencies: Record<FanoutContender, number[]> = { herald: [], raw: [], pgListen: [] }
    /** Spread between the first and the last receiver, per sample: what fan-out adds. */
    const spreads: Record<FanoutContender, number[]> = { herald: [], raw: [], pgListen: [] }
    let negative = 0
    const notifiesBefore = herald.stats().notifies
    for (let round = 0; round < warmup + samples; round++) {
      for (const contender of shuffled(CONTENDERS)) {
        const ping: FanoutPing = {
          seq: round,
          key: `user:${1000 + (round % 1000)}:profile`,
          op: 'invalidate',
        }
        const sentAt = now()
        const [, arrivals] = await withTimeout(
          Promise.race([
            Promise.all([
              send[contender](ping),
              Promise.all(receivers.map((receiver) => receiver.receive('got', SAMPLE_TIMEOUT_MS))),
            ]),
            fleet.failure,
          ]),
          SAMPLE_TIMEOUT_MS,
          `${contender}: ping ${round} did not reach every receiver`,
        )
        for (const arrival of arrivals) {
          if (arrival.contender !== contender || arrival.seq !== round) {
            throw new Error(
              `expected ${contender} ping ${round}, a receiver got ${arrival.contender} ${arrival.seq}`,
            )
          }
        }
        const times = arrivals.map((arrival) => arrival.at)
        const last = Math.max(...times) - sentAt
        if (Math.min(...times) < sentAt) negative++
        if (round >= warmup) {
          latencies[contender].push(last)
          spreads[contender].push(Math.max(...times) - Math.min(...times))
        }
      }
    }
    const heraldNotifies = herald.stats().notifies - notifiesBefore
    const stopped = await fleet.stop()
    const rounds = warmup + samples
    for (const report of stopped) {
      if (report.heraldPings !== rounds || report.rawPings !== rounds || report.pgListenPings !== rounds) {
        throw new Error(
          `a receiver saw ${report.heraldPings} Herald, ${report.rawPings} raw and ` +
            `${report.pgListenPings} pg-listen pings of ${rounds}`,
        )
      }
    }
    const heraldSummary = summarize(latencies.herald)
    const rawSummary = summarize(latencies.raw)
    const pgListenSummary = summarize(latencies.pgListen)
    return {
      kind: 'latency',
      name: 'fanout',
      title: `Fan-out latency: one publisher, ${receivers.length} receiving processes, to the last receiver`,
      method:
        `Publisher records the send time, each of ${receivers.length} receivers (own process, own Herald, ` +
        'postgres.js sql.listen or pg-listen subscriber) the time its handler ran, both as performance.timeOrigin + performance.now() ' +
        '(one machine clock); a sample is the last receipt minus the send, once every receiver has reported over ' +
        'IPC and the publish has resolved; one message in flight; contenders run in a fresh random order each round.',
      contenders: [
        {
          id: 'herald',
          name: 'Herald',
          label: 'Herald: publish → last of N subscribe handlers',
          summary: heraldSummary,
          discarded: warmup,
        },
        {
          id: 'raw',
          name: 'postgres.js',
          label: 'postgres.js: sql.notify → last of N sql.listen',
          summary: rawSummary,
          discarded: warmup,
        },
        {
          id: 'pgListen',
          name: 'pg-listen',
          label: 'pg-listen: notify → last of N notifications.on',
          summary: pgListenSummary,
          discarded: warmup,
        },
      ],
      comparisons: [
        {
          of: 'herald',
          to: 'raw',
          p50: heraldSummary.p50 / rawSummary.p50,
          p99: heraldSummary.p99 / rawSummary.p99,
        },
        {
          of: 'herald',
          to: 'pgListen',
          p50: heraldSummary.p50 / pgListenSummary.p50,
          p99: heraldSummary.p99 / pgListenSummary.p99,
        },
      ],
      checks: {
        receivers: receivers.length,
        roundsPerContender: rounds,
        heraldNotifies,
        receiverHeraldPingsMin: Math.min(...stopped.map((report) => report.heraldPings)),
        receiverRawPingsMin: Math.min(...stopped.map((report) => report.rawPings)),
        receiverPgListenPingsMin: Math.min(...stopped.map((report) => report.pgListenPings)),
        // A receipt stamped before its send would mean the clocks disagree across processes.
        samplesWithReceiptBeforeSend: negative,
        // First-to-last receiver spread (ms, median): the cost of fan-out itself.
        heraldSpreadP50Ms: median(spreads.herald),
        rawSpreadP50Ms: median(spreads.raw),
        pgListenSpreadP50Ms: median(spreads.pgListen),
      },
    }
  } catch (error) {
    await Promise.all(fleet.receivers.map((receiver) => receiver.kill()))
    throw error
  } finally {
    await fleet[Symbol.asyncDispose]()
  }
}

async function runThroughput(context: BenchContext): Promise<RepeatedResult> {
  const keys = keyCount(context)
  const fleet = await openFleet(context, 2 * keys)
  try {
    const { receivers, opened, sql, channels } = fleet
    const { herald, cache } = opened
    const { subscriber } = fleet.pgListen
    const notifies: Record<FanoutContender, number[]> = { herald: [], raw: [], pgListen: [] }
    let sequence = 0
    const measured = await interleave(
      CONTENDERS,
      { repetitions: context.repetitions, discard: DISCARD },
      async (contender) => {
        const round = sequence++
        const roundKeys = Array.from({ length: keys }, (_, id) => fanoutKey(round, id))
        for (const receiver of receivers) receiver.send({ type: 'fill', round, contender, keys })
        await Promise.race([
          Promise.all(receivers.map((receiver) => receiver.receive('filled', ROUND_TIMEOUT_MS))),
          fleet.failure,
        ])
        const notifiesBefore = herald.stats().notifies
        const startedAt = performance.now()
        const evicted = Promise.all(
          receivers.map((receiver) => receiver.receive('evicted', ROUND_TIMEOUT_MS)),
        )
        await Promise.race([Promise.all([invalidate(contender, roundKeys), evicted]), fleet.failure])
        const elapsedMs = performance.now() - startedAt
        notifies[contender].push(contender === 'herald' ? herald.stats().notifies - notifiesBefore : keys)
        return keys / (elapsedMs / 1000)
      },
    )
    const rounds = sequence
    const stats = cache.stats()
    const stopped = await fleet.stop()
    // Every contender ran the same number of rounds, so each per-key baseline sent this many.
    const perKeySent = (rounds / CONTENDERS.length) * keys
    for (const report of stopped) {
      if (report.rawKeyNotifications !== perKeySent || report.pgListenKeyNotifications !== perKeySent) {
        throw new Error(
          `a receiver got ${report.rawKeyNotifications} raw and ${report.pgListenKeyNotifications} ` +
            `pg-listen NOTIFYs of ${perKeySent} each`,
        )
      }
    }
    return {
      kind: 'repeated',
      name: 'fanout-throughput',
      title: `Fan-out throughput: one instance invalidates, ${receivers.length} others evict`,
      method:
        `${keys.toLocaleString('en-US')} keys per repetition, cached by each of ${receivers.length} receiving ` +
        'processes (own Herald and InvalidatingCache, or a Map behind postgres.js sql.listen for the baseline or ' +
        'behind a pg-listen subscriber); ' +
        'timed from the first invalidation until every receiver has reported (over IPC) that its last key left; ' +
        `keys/s. Herald: Promise.all of ${BATCH.toLocaleString('en-US')} cache.invalidate(key) calls at a time ` +
        '(coalesced per tick); baseline: one sql.notify(channel, key) per key, all issued at once ' +
        '(Promise.all, default pool of 10 connections); pg-listen: one subscriber.notify(channel, key) per key, ' +
        'one after another on its one connection (pg runs one statement at a time per client).',
      unit: { name: 'keys/s', better: 'higher' },
      repetitions: measured.raw.length,
      discarded: DISCARD,
      contenders: [
        {
          id: 'herald',
          name: 'Herald',
          label: `Herald: ${BATCH.toLocaleString('en-US')} × invalidate(key) at a time`,
          figures: figures(measured.herald),
        },
        {
          id: 'raw',
          name: 'NOTIFY per key',
          label: 'postgres.js: sql.notify per key',
          figures: figures(measured.raw),
        },
        {
          id: 'pgListen',
          name: 'pg-listen',
          label: 'pg-listen: subscriber.notify per key',
          figures: figures(measured.pgListen),
        },
      ],
      comparisons: [compare(measured, 'herald', 'raw'), compare(measured, 'herald', 'pgListen')],
      checks: {
        keysPerRepetition: keys,
        receivers: receivers.length,
        rounds,
        heraldNotifiesPerRound: median(notifies.herald),
        rawNotifiesPerRound: median(notifies.raw),
        pgListenNotifiesPerRound: median(notifies.pgListen),
        invalidationsSent: stats.invalidationsSent,
        receiverInvalidationsReceivedMin: Math.min(...stopped.map((report) => report.invalidationsReceived)),
        receiverRawNotificationsMin: Math.min(...stopped.map((report) => report.rawKeyNotifications)),
        receiverPgListenNotificationsMin: Math.min(
          ...stopped.map((report) => report.pgListenKeyNotifications),
        ),
      },
    }

    async function invalidate(contender: FanoutContender, roundKeys: readonly string[]): Promise<void> {
      if (contender === 'herald') {
        for (let start = 0; start < roundKeys.length; start += BATCH) {
          await Promise.all(roundKeys.slice(start, start + BATCH).map((key) => cache.invalidate(key)))
        }
        return
      }
      if (contender === 'raw') {
        await Promise.all(roundKeys.map((key) => sql.notify(channels.rawKeys, key)))
        return
      }
      // pg-listen has no pool, and pg runs one statement at a time per client: issued all at
      // once they would only wait in pg's queue (which pg 8.23 deprecates, with a warning), so
      // one after another is the same traffic on the wire.
      for (const key of roundKeys) await subscriber.notify(channels.pgListenKeys, key)
    }
  } catch (error) {
    await Promise.all(fleet.receivers.map((receiver) => receiver.kill()))
    throw error
  } finally {
    await fleet[Symbol.asyncDispose]()
  }
}
