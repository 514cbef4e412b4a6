/**
 * Commit contention: 32 concurrent writers, each transaction a one-row UPDATE of a random row
 * of a 1,000-row table, for a fixed time, with and without a notification per transaction.
 * A transaction that issued NOTIFY takes a server-wide lock at commit (it serializes the
 * appends to the notification queue), so every NOTIFYing writer queues behind every other:
 * this measures what that costs writers, and what Herald's two ways of invalidating cost.
 */
import { uniqueName, waitFor } from '@herald/testing'
import postgres from 'postgres'
import type { Benchmark, BenchContext, RepeatedResult } from './lib/benchmark.js'
import { openCache } from './lib/open-cache.js'
import { compare, figures, interleave } from './lib/repetitions.js'
import { median } from './lib/stats.js'

const WRITERS = 32
const ROWS = 1_000
const DURATION_MS = 5_000
const QUICK_DURATION_MS = 2_000
/** The discarded round of each mode is this short: it only warms pools and prepared statements. */
const WARMUP_MS = 1_000
/** 4 modes × 5 s per repetition: three repetitions keep the benchmark near a minute. */
const MAX_REPETITIONS = 3
const DISCARD = 1
const SETTLE_TIMEOUT_MS = 30_000

type Mode = 'none' | 'rawNotify' | 'heraldTx' | 'heraldAfter'
const MODES: readonly Mode[] = ['none', 'rawNotify', 'heraldTx', 'heraldAfter']

function durationMs(context: BenchContext): number {
  return context.quick ? QUICK_DURATION_MS : DURATION_MS
}

function repetitions(context: BenchContext): number {
  return Math.min(context.repetitions, MAX_REPETITIONS)
}

export const commitContention: Benchmark = {
  name: 'commit-contention',
  plan: (context) =>
    `${repetitions(context)} repetitions per mode after ${DISCARD} discarded, ` +
    `${WRITERS} writers for ${durationMs(context) / 1000} s each`,
  run,
}

async function run(context: BenchContext): Promise<RepeatedResult> {
  const duration = durationMs(context)
  const table = uniqueName('bench_contention')
  const rawChannel = uniqueName('bench_contention_raw')
  const sql = postgres(context.url, {
    max: WRITERS,
    onnotice: () => {},
    connection: { application_name: 'bench-contention-writer' },
  })
  // The raw NOTIFYs are listened to, as Herald's are by its own listener: a NOTIFY nobody
  // hears would be an odd baseline, and both receive in this process.
  const listener = postgres(context.url, {
    max: 1,
    onnotice: () => {},
    connection: { application_name: 'bench-contention-listener' },
  })
  await using opened = await openCache(context.url, { applicationName: 'bench-contention', max: ROWS })
  const { herald, cache } = opened
  let rawSent = 0
  let rawReceived = 0
  try {
    await sql`create table ${sql(table)} (id int primary key, n int not null default 0)`
    await sql`insert into ${sql(table)} (id) select generate_series(1, ${ROWS}::int)`
    await sql`vacuum analyze ${sql(table)}`
    await listener.listen(rawChannel, () => {
      rawReceived++
    })
    const writes: Record<Mode, number[]> = { none: [], rawNotify: [], heraldTx: [], heraldAfter: [] }
    const notifiesPerWrite: Record<Mode, number[]> = {
      none: [],
      rawNotify: [],
      heraldTx: [],
      heraldAfter: [],
    }
    const measured = await interleave(
      MODES,
      { repetitions: repetitions(context), discard: DISCARD },
      async (mode, round) => {
        const ms = round < DISCARD ? WARMUP_MS : duration
        const notifiesBefore = herald.stats().notifies
        const rawBefore = rawSent
        const { count, elapsedMs } = await Promise.race([write(mode, ms), opened.failure])
        const notifies = mode === 'rawNotify' ? rawSent - rawBefore : herald.stats().notifies - notifiesBefore
        await settle()
        if (round >= DISCARD) {
          writes[mode].push(count)
          notifiesPerWrite[mode].push(notifies / count)
        }
        return count / (elapsedMs / 1000)
      },
    )
    const [queue] = await sql<{ usage: number }[]>`select pg_notification_queue_usage() as usage`
    const stats = cache.stats()
    return {
      kind: 'repeated',
      name: 'commit-contention',
      title: `Commit contention: ${WRITERS} writers, one-row UPDATE per transaction`,
      method:
        `${WRITERS} concurrent writers (postgres.js, max ${WRITERS} connections, one process), each running ` +
        `sql.begin(UPDATE one random row of ${ROWS.toLocaleString('en-US')}) back to back for ` +
        `${duration / 1000} s; write transactions/s. (a) no notification; (b) select pg_notify(channel, key) inside ` +
        'each transaction; (c) cache.invalidate(key, { tx }) inside each transaction (one NOTIFY per transaction ' +
        'plus one pg_current_xact_id() round trip), which takes the server-wide NOTIFY commit lock exactly as (b) ' +
        'does; (d) await cache.invalidate(key) right after each commit, outside the transaction: coalesced per ' +
        'tick on Herald’s publisher connection, so many writers share one NOTIFY and one commit lock. (d) is after ' +
        'commit by construction, but not atomic with it: a crash between the commit and the invalidation loses ' +
        'the invalidation (unless the cache is durable), which (c) cannot. Every NOTIFY is listened to in-process ' +
        'and waited for before the next mode runs.',
      unit: { name: 'tx/s', better: 'higher' },
      repetitions: measured.none.length,
      discarded: DISCARD,
      contenders: [
        {
          id: 'none',
          name: 'no notification',
          label: '(a) UPDATE, no notification',
          figures: figures(measured.none),
        },
        {
          id: 'rawNotify',
          name: 'pg_notify in tx',
          label: '(b) UPDATE + pg_notify in the transaction',
          figures: figures(measured.rawNotify),
        },
        {
          id: 'heraldTx',
          name: 'Herald { tx }',
          label: '(c) UPDATE + cache.invalidate(key, { tx })',
          figures: figures(measured.heraldTx),
        },
        {
          id: 'heraldAfter',
          name: 'Herald after commit',
          label: '(d) UPDATE, then cache.invalidate(key)',
          figures: figures(measured.heraldAfter),
        },
      ],
      comparisons: [
        compare(measured, 'rawNotify', 'none'),
        compare(measured, 'heraldTx', 'none'),
        compare(measured, 'heraldAfter', 'none'),
      ],
      checks: {
        writers: WRITERS,
        rows: ROWS,
        durationMs: duration,
        // Transactions per kept round (median), per mode.
        writesNone: median(writes.none),
        writesRawNotify: median(writes.rawNotify),
        writesHeraldTx: median(writes.heraldTx),
        writesHeraldAfter: median(writes.heraldAfter),
        // NOTIFYs per write transaction: 1 for (b) and (c), far below 1 for (d) (coalescing).
        notifiesPerWriteRawNotify: median(notifiesPerWrite.rawNotify),
        notifiesPerWriteHeraldTx: median(notifiesPerWrite.heraldTx),
        notifiesPerWriteHeraldAfter: median(notifiesPerWrite.heraldAfter),
        rawNotifiesSent: rawSent,
        rawNotifiesReceived: rawReceived,
        heraldNotifies: herald.stats().notifies,
        heraldNotificationsReceived: herald.stats().notifications,
        invalidationsSent: stats.invalidationsSent,
        notificationQueueUsageAtEnd: queue?.usage ?? -1,
      },
    }
  } finally {
    await sql`drop table if exists ${sql(table)}`.catch(() => {})
    await Promise.all([sql.end({ timeout: 1 }), listener.end({ timeout: 1 })])
  }

  /** `WRITERS` loops of one transaction after another until `ms` have passed. */
  async function write(mode: Mode, ms: number): Promise<{ count: number; elapsedMs: number }> {
    let count = 0
    const startedAt = performance.now()
    const deadline = startedAt + ms
    await Promise.all(
      Array.from({ length: WRITERS }, async () => {
        while (performance.now() < deadline) {
          const id = 1 + Math.floor(Math.random() * ROWS)
          const key = `row:${id}`
          await sql.begin(async (tx) => {
            await tx`update ${sql(table)} set n = n + 1 where id = ${id}`
            if (mode === 'rawNotify') {
              await tx`select pg_notify(${rawChannel}, ${key})`
              rawSent++
            } else if (mode === 'heraldTx') {
              await cache.invalidate(key, { tx })
            }
          })
          if (mode === 'heraldAfter') await cache.invalidate(key)
          count++
        }
      }),
    )
    return { count, elapsedMs: performance.now() - startedAt }
  }

  /** Waits until every NOTIFY sent so far has been heard, so none is processed during the next mode. */
  async function settle(): Promise<void> {
    await waitFor(() => rawReceived >= rawSent && herald.stats().notifications >= herald.stats().notifies, {
      timeoutMs: SETTLE_TIMEOUT_MS,
      message: `notifications not all heard (raw ${rawReceived}/${rawSent}, Herald ${herald.stats().notifications}/${herald.stats().notifies})`,
    })
  }
}
