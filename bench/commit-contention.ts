/**
 * Commit contention: concurrent writers (32, or one for the single-writer variant), each transaction a one-row UPDATE of a random row
 * of a 1,000-row table, for a fixed time, with and without a notification per transaction.
 * A transaction that issued NOTIFY takes a server-wide lock at commit (it serializes the
 * appends to the notification queue), so every NOTIFYing writer queues behind every other:
 * this measures what that costs writers, and what Herald's two ways of invalidating cost.
 */
import { startPostgres, uniqueName, waitFor } from '@herald/testing'
import postgres, { type TransactionSql } from 'postgres'
import type { Benchmark, BenchContext, RepeatedResult } from './lib/benchmark.js'
import { Herald } from '@herald/core'
import { installInvalidationTrigger, InvalidatingCache, OutboxRelay } from '@herald/lru'
import { openCache } from './lib/open-cache.js'
import type { User } from './lib/users.js'
import { compare, figures, interleave } from './lib/repetitions.js'
import { median, percentile } from './lib/stats.js'

const CONTENDED_WRITERS = 32
const ROWS = 1_000
const DURATION_MS = 5_000
const QUICK_DURATION_MS = 2_000
/** The discarded round of each mode is this short: it only warms pools and prepared statements. */
const WARMUP_MS = 1_000
/** 9 modes × 5 s per repetition: three repetitions keep a variant near two and a half minutes. */
const MAX_REPETITIONS = 3
const DISCARD = 1
const SETTLE_TIMEOUT_MS = 30_000

type Mode =
  | 'none'
  | 'secondStatement'
  | 'logRow'
  | 'rawNotify'
  | 'heraldTx'
  | 'heraldRelay'
  | 'heraldAfter'
  | 'notifyTrigger'
  | 'relayTrigger'
const MODES: readonly Mode[] = [
  'none',
  'secondStatement',
  'logRow',
  'rawNotify',
  'heraldTx',
  'heraldRelay',
  'heraldAfter',
  'notifyTrigger',
  'relayTrigger',
]

const NOTIFYING: ReadonlySet<Mode> = new Set(['rawNotify', 'heraldTx', 'heraldRelay', 'heraldAfter'])

function durationMs(context: BenchContext): number {
  return context.quick ? QUICK_DURATION_MS : DURATION_MS
}

function repetitions(context: BenchContext): number {
  return Math.min(context.repetitions, MAX_REPETITIONS)
}

/**
 * `awaited`: each statement of the transaction awaited in turn, as most code is written; the
 * Node process (one core of two) is the bottleneck, and any second statement costs a round trip.
 * `pipelined`: the UPDATE and the mode's statement sent together (`Promise.all`), so each
 * transaction is three round trips in every mode and the server's work, the commit lock
 * included, decides: closer to what pgbench measures.
 */
type Style = 'awaited' | 'pipelined'

/**
 * `fast`: the suite's server (fsync and synchronous_commit off): a commit costs next to
 * nothing, so holding the NOTIFY lock across one costs little. `durable`: a server of its own
 * with fsync, synchronous_commit and full_page_writes on, as in production: a commit waits for
 * its WAL flush, commits without NOTIFY share flushes (group commit), and NOTIFYing ones hold
 * the lock across their own flush, one at a time.
 */
type ServerKind = 'fast' | 'durable'

const DURABLE_FLAGS = ['-c', 'fsync=on', '-c', 'synchronous_commit=on', '-c', 'full_page_writes=on']

interface Variant {
  readonly name: string
  readonly style: Style
  readonly server: ServerKind
  readonly writers: number
}

function contention(variant: Variant): Benchmark {
  const { style, server, writers } = variant
  return {
    name: variant.name,
    plan: (context) =>
      `${repetitions(context)} repetitions per mode after ${DISCARD} discarded, ` +
      `${writers} writer${writers === 1 ? '' : 's'} for ${durationMs(context) / 1000} s each, statements ${style}, ${server} server`,
    run: async (context) => {
      if (server === 'fast') return run(context, variant)
      // DATABASE_URL is used as it is: its settings are whatever its owner chose.
      if (process.env['DATABASE_URL']) return run(context, variant)
      await using durable = await startPostgres({ label: 'bench-durable', postgresFlags: DURABLE_FLAGS })
      // Awaited here, so the server outlives the run.
      return await run({ ...context, url: durable.url }, variant)
    },
  }
}

export const commitContention = contention({
  name: 'commit-contention',
  style: 'awaited',
  server: 'fast',
  writers: CONTENDED_WRITERS,
})
export const commitContentionPipelined = contention({
  name: 'commit-contention-pipelined',
  style: 'pipelined',
  server: 'fast',
  writers: CONTENDED_WRITERS,
})
export const commitContentionDurable = contention({
  name: 'commit-contention-durable',
  style: 'awaited',
  server: 'durable',
  writers: CONTENDED_WRITERS,
})
/** One writer, no contention: what each way costs a lone writer, and how soon others hear. */
export const commitSingleWriter = contention({
  name: 'commit-single-writer',
  style: 'awaited',
  server: 'fast',
  writers: 1,
})

async function run(context: BenchContext, variant: Variant): Promise<RepeatedResult> {
  const { name, style, server, writers } = variant
  const duration = durationMs(context)
  const table = uniqueName('bench_contention')
  const notifyTriggerTable = uniqueName('bench_contention_notify_trigger')
  const relayTriggerTable = uniqueName('bench_contention_relay_trigger')
  const triggerChannel = uniqueName('bench_contention_trigger')
  let triggerMessages = 0
  // One relay for the relay-mode trigger's outbox, on its own connection.
  const relaySql = postgres(context.url, {
    max: 1,
    onnotice: () => {},
    connection: { application_name: 'bench-contention-outbox-relay' },
  })
  const outboxRelay = new OutboxRelay(relaySql)
  outboxRelay.on('error', () => {})
  const rawChannel = uniqueName('bench_contention_raw')
  const sql = postgres(context.url, {
    max: writers,
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
  const cacheChannel = uniqueName('bench_contention_cache')
  const relayChannel = uniqueName('bench_contention_relay')
  await using opened = await openCache(context.url, {
    applicationName: 'bench-contention',
    max: ROWS,
    channel: cacheChannel,
  })
  const { herald, cache } = opened
  // The same Herald, a durable cache whose transactional invalidations are relayed after commit.
  const relayed = new InvalidatingCache<User>({
    herald,
    name: 'users-relayed',
    channel: relayChannel,
    max: ROWS,
    durable: { relay: true },
  })
  const relayFailure = new Promise<never>((_, reject) => relayed.on('error', reject))
  relayFailure.catch(() => {})
  // Another instance (its own listener connection, in this process): when it hears of each
  // commit. Keys carry a sequence number, so each write is matched to its own message.
  const receiver = new Herald({ connection: context.url, applicationName: 'bench-contention-receiver' })
  const committedAt = new Map<number, number>()
  const heardAt = new Map<number, number>()
  const heard = (key: string): void => {
    const sequence = Number(key.slice(key.lastIndexOf(':') + 1))
    if (!heardAt.has(sequence)) heardAt.set(sequence, performance.now())
  }
  const heardKeys = (body: unknown): void => {
    for (const key of (body as { k?: string[] }).k ?? []) heard(key)
  }
  const lagMs: Record<Mode, number[]> = byMode()
  let sequence = 0
  let rawSent = 0
  let rawReceived = 0
  try {
    await receiver.start()
    await receiver.subscribe(cacheChannel, heardKeys)
    await receiver.subscribe(relayChannel, heardKeys)
    await createTable(table)
    // The same table twice more, each with an invalidation trigger: one that NOTIFYs in the
    // writer's transaction, one in relay mode (an outbox row, sent by the relay below).
    for (const [triggered, relay] of [
      [notifyTriggerTable, false],
      [relayTriggerTable, true],
    ] as const) {
      await createTable(triggered)
      await installInvalidationTrigger(sql, {
        table: triggered,
        cache: 'users-triggered',
        channel: triggerChannel,
        key: `'row:' || id`,
        relay,
      })
    }
    await receiver.subscribe(triggerChannel, () => {
      triggerMessages++
    })
    await outboxRelay.start()
    await listener.listen(rawChannel, (payload) => {
      heard(payload)
      rawReceived++
    })
    await relayed.ready()
    const writes: Record<Mode, number[]> = byMode()
    const notifiesPerWrite: Record<Mode, number[]> = byMode()
    const measured = await interleave(
      MODES,
      { repetitions: repetitions(context), discard: DISCARD },
      async (mode, round) => {
        const ms = round < DISCARD ? WARMUP_MS : duration
        const notifiesBefore = herald.stats().notifies
        const triggerMessagesBefore = triggerMessages
        committedAt.clear()
        heardAt.clear()
        const rawBefore = rawSent
        const { count, elapsedMs } = await Promise.race([write(mode, ms), opened.failure, relayFailure])
        const notifies = mode === 'rawNotify' ? rawSent - rawBefore : herald.stats().notifies - notifiesBefore
        await settle()
        // Trigger messages: one per write statement. The relay sends a batch in one transaction,
        // where PostgreSQL folds identical messages (two writes of one row) into one: wait for
        // its outbox to empty instead, then for the last NOTIFYs to arrive.
        if (mode === 'notifyTrigger') {
          await waitFor(() => triggerMessages >= triggerMessagesBefore + count, {
            timeoutMs: SETTLE_TIMEOUT_MS,
            message: `trigger messages: ${triggerMessages - triggerMessagesBefore} of ${count}`,
          })
        } else if (mode === 'relayTrigger') {
          await waitFor(
            async () => {
              const [row] = await sql<
                { rows: number }[]
              >`select count(*)::int as rows from herald.notify_outbox`
              return row?.rows === 0
            },
            { timeoutMs: SETTLE_TIMEOUT_MS, message: 'the outbox did not empty' },
          )
          await new Promise((resolve) => setTimeout(resolve, 200))
        }
        await waitFor(() => !NOTIFYING.has(mode) || heardAt.size >= committedAt.size, {
          timeoutMs: SETTLE_TIMEOUT_MS,
          message: `the receiving instance heard ${heardAt.size} of ${committedAt.size} commits`,
        })
        if (round >= DISCARD) {
          for (const [written, at] of committedAt) {
            const heardThen = heardAt.get(written)
            if (heardThen !== undefined) lagMs[mode].push(heardThen - at)
          }
          writes[mode].push(count)
          notifiesPerWrite[mode].push(notifies / count)
        }
        return count / (elapsedMs / 1000)
      },
    )
    const [queue] = await sql<{ usage: number; fsync: string; synchronousCommit: string }[]>`
      select pg_notification_queue_usage() as usage, current_setting('fsync') as fsync,
             current_setting('synchronous_commit') as "synchronousCommit"`
    const stats = cache.stats()
    return {
      kind: 'repeated',
      name,
      title: `Commit contention: ${writers} writer${writers === 1 ? '' : 's'}, one-row UPDATE per transaction, statements ${style}, ${server} server`,
      method:
        `${writers} concurrent writer${writers === 1 ? '' : 's'} (postgres.js, max ${writers} connections, one process), each running ` +
        `sql.begin(UPDATE one random row of ${ROWS.toLocaleString('en-US')}) back to back for ` +
        `${duration / 1000} s; write transactions/s. (a) no notification; (a') a second statement (select 1) in ` +
        `each transaction, no notification: the floor for anything recorded in the transaction; (a'') the relay's log row insert ` +
        `alone, no notification; (b) select pg_notify(channel, key) inside ` +
        'each transaction; (c) cache.invalidate(key, { tx }) inside each transaction (one NOTIFY per transaction, ' +
        'its transaction id asked in the same round trip), which takes the server-wide NOTIFY commit lock exactly as (b) ' +
        'does; (d) await cache.invalidate(key) right after each commit, outside the transaction: coalesced per ' +
        'tick on Herald’s publisher connection, so many writers share one NOTIFY and one commit lock. (d) is after ' +
        'commit by construction, but not atomic with it: a crash between the commit and the invalidation loses ' +
        'the invalidation (unless the cache is durable), which (c) cannot. (e) cache.invalidate(key, { tx }) on a ' +
        'cache with durable: { relay: true }: the transaction inserts only its log row (no NOTIFY, no commit lock); ' +
        'the instance asks which of its writers’ transactions have committed (one pg_xact_status query for all) and ' +
        'sends one NOTIFY for all it found — atomic with the commit like (c), since the log row is the guarantee. ' +
        '(f) the same UPDATE on a copy of the table with installInvalidationTrigger (key row:id): a statement-level ' +
        'trigger that NOTIFYs in the writer’s transaction; (g) the same with relay: true: the trigger inserts the ' +
        'message into herald.notify_outbox, and one OutboxRelay (own connection, in this process) sends committed ' +
        'rows, up to 1,000 per transaction of its own. ' +
        'Every NOTIFY is listened to in-process and waited for before the next mode runs. ' +
        (server === 'durable'
          ? 'On a server of its own with fsync, synchronous_commit and full_page_writes on (each commit waits ' +
            'for its WAL flush; commits without NOTIFY share flushes, NOTIFYing ones flush one at a time). '
          : '') +
        (style === 'awaited'
          ? 'Each statement is awaited before the next, as most code is written: the Node process is the bottleneck.'
          : 'The UPDATE and the mode’s statement are sent together (Promise.all), so every mode is three round ' +
            'trips (BEGIN, the statements, COMMIT) and the server’s work, the NOTIFY commit lock included, decides.'),
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
          id: 'secondStatement',
          name: 'second statement',
          label: "(a') UPDATE + select 1, no notification",
          figures: figures(measured.secondStatement),
        },
        {
          id: 'logRow',
          name: 'log row',
          label: "(a'') UPDATE + durable log row insert, no notification",
          figures: figures(measured.logRow),
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
          id: 'heraldRelay',
          name: 'Herald { tx } relayed',
          label: '(e) UPDATE + cache.invalidate(key, { tx }), durable relay',
          figures: figures(measured.heraldRelay),
        },
        {
          id: 'heraldAfter',
          name: 'Herald after commit',
          label: '(d) UPDATE, then cache.invalidate(key)',
          figures: figures(measured.heraldAfter),
        },
        {
          id: 'notifyTrigger',
          name: 'NOTIFY trigger',
          label: '(f) UPDATE of a table with an invalidation trigger',
          figures: figures(measured.notifyTrigger),
        },
        {
          id: 'relayTrigger',
          name: 'relay trigger',
          label: '(g) UPDATE of a table with a relay-mode trigger',
          figures: figures(measured.relayTrigger),
        },
      ],
      comparisons: [
        compare(measured, 'secondStatement', 'none'),
        compare(measured, 'logRow', 'none'),
        compare(measured, 'rawNotify', 'none'),
        compare(measured, 'heraldTx', 'none'),
        compare(measured, 'heraldRelay', 'none'),
        compare(measured, 'heraldAfter', 'none'),
        compare(measured, 'heraldRelay', 'rawNotify'),
        compare(measured, 'heraldRelay', 'secondStatement'),
        compare(measured, 'heraldRelay', 'logRow'),
        compare(measured, 'notifyTrigger', 'none'),
        compare(measured, 'relayTrigger', 'none'),
        compare(measured, 'relayTrigger', 'notifyTrigger'),
      ],
      findings: [
        'Commit → heard by another instance (its own listener connection), p50 / p99 over the kept rounds: ' +
          (['rawNotify', 'heraldTx', 'heraldRelay', 'heraldAfter'] as const)
            .map((mode) => `${MODE_TAGS[mode]} ${lagText(lagMs[mode])}`)
            .join('; ') +
          '. Negative: the NOTIFY reached the other instance before the writer had its own COMMIT reply.',
        'NOTIFYs per write transaction: ' +
          (['rawNotify', 'heraldTx', 'heraldRelay', 'heraldAfter'] as const)
            .map((mode) => `${MODE_TAGS[mode]} ${median(notifiesPerWrite[mode]).toFixed(3)}`)
            .join('; ') +
          '.',
      ],
      checks: {
        writers,
        rows: ROWS,
        durationMs: duration,
        // Transactions per kept round (median), per mode.
        writesNone: median(writes.none),
        writesSecondStatement: median(writes.secondStatement),
        writesLogRow: median(writes.logRow),
        writesRawNotify: median(writes.rawNotify),
        writesHeraldTx: median(writes.heraldTx),
        writesHeraldRelay: median(writes.heraldRelay),
        writesHeraldAfter: median(writes.heraldAfter),
        writesNotifyTrigger: median(writes.notifyTrigger),
        writesRelayTrigger: median(writes.relayTrigger),
        outboxRelayed: outboxRelay.stats().relayed,
        // NOTIFYs per write transaction: 1 for (b) and (c), far below 1 for (d) (coalescing).
        notifiesPerWriteRawNotify: median(notifiesPerWrite.rawNotify),
        notifiesPerWriteHeraldTx: median(notifiesPerWrite.heraldTx),
        notifiesPerWriteHeraldRelay: median(notifiesPerWrite.heraldRelay),
        notifiesPerWriteHeraldAfter: median(notifiesPerWrite.heraldAfter),
        // Commit (the writer's sql.begin resolved) → another instance heard of it, in ms: the
        // price of each way in freshness. Negative when the NOTIFY outran the writer's own reply.
        ...lag('RawNotify', lagMs.rawNotify),
        ...lag('HeraldTx', lagMs.heraldTx),
        ...lag('HeraldRelay', lagMs.heraldRelay),
        ...lag('HeraldAfter', lagMs.heraldAfter),
        rawNotifiesSent: rawSent,
        rawNotifiesReceived: rawReceived,
        heraldNotifies: herald.stats().notifies,
        heraldNotificationsReceived: herald.stats().notifications,
        invalidationsSent: stats.invalidationsSent,
        relayedInvalidationsSent: relayed.stats().invalidationsSent,
        relayPendingAtEnd: relayed.stats().pendingInvalidations,
        notificationQueueUsageAtEnd: queue?.usage ?? -1,
        // 1 when on: the figures of a durable server differ in kind from those of a fast one.
        serverFsync: queue?.fsync === 'on' ? 1 : 0,
        serverSynchronousCommit: queue?.synchronousCommit === 'on' ? 1 : 0,
      },
    }
  } finally {
    await outboxRelay.close()
    await relaySql.end({ timeout: 1 })
    for (const dropped of [table, notifyTriggerTable, relayTriggerTable]) {
      await sql`drop table if exists ${sql(dropped)}`.catch(() => {})
    }
    await relayed.close()
    await receiver.close()
    await Promise.all([sql.end({ timeout: 1 }), listener.end({ timeout: 1 })])
  }

  /** `writers` loops of one transaction after another until `ms` have passed. */
  async function write(mode: Mode, ms: number): Promise<{ count: number; elapsedMs: number }> {
    let count = 0
    const startedAt = performance.now()
    const deadline = startedAt + ms
    await Promise.all(
      Array.from({ length: writers }, async () => {
        while (performance.now() < deadline) {
          const id = 1 + Math.floor(Math.random() * ROWS)
          const written = sequence++
          const key = `row:${id}:${written}`
          const target =
            mode === 'notifyTrigger'
              ? notifyTriggerTable
              : mode === 'relayTrigger'
                ? relayTriggerTable
                : table
          await sql.begin(async (tx) => {
            const update = tx`update ${sql(target)} set n = n + 1 where id = ${id}`
            if (style === 'awaited') await update
            const second = secondStatement(mode, tx, key)
            await (style === 'awaited' ? second : Promise.all([update, second]))
          })
          committedAt.set(written, performance.now())
          if (mode === 'heraldAfter') await cache.invalidate(key)
          count++
        }
      }),
    )
    return { count, elapsedMs: performance.now() - startedAt }
  }

  /** A table of `ROWS` rows (id, n = 0), vacuumed and analyzed. */
  async function createTable(name: string): Promise<void> {
    await sql`create table ${sql(name)} (id int primary key, n int not null default 0)`
    await sql`insert into ${sql(name)} (id) select generate_series(1, ${ROWS}::int)`
    await sql`vacuum analyze ${sql(name)}`
  }

  /** The mode's statement in the transaction (none for (a) and (d)). */
  function secondStatement(mode: Mode, tx: TransactionSql, key: string): Promise<unknown> | undefined {
    switch (mode) {
      case 'secondStatement':
        return tx`select 1`.then(() => {})
      case 'logRow':
        // The statement the relay's writer runs (DurableLog.append), without the relay.
        return tx`
          insert into herald.cache_invalidations (cache, keys)
          values ('bench-log-row', ${JSON.stringify([key])}::text::jsonb)
          returning id::text as id, tx::text as tx`.then(() => {})
      case 'rawNotify':
        rawSent++
        return tx`select pg_notify(${rawChannel}, ${key})`.then(() => {})
      case 'heraldTx':
        return cache.invalidate(key, { tx })
      case 'heraldRelay':
        return relayed.invalidate(key, { tx })
      default:
        return undefined
    }
  }

  /** Waits until every NOTIFY sent so far has been heard, so none is processed during the next mode. */
  async function settle(): Promise<void> {
    await waitFor(() => rawReceived >= rawSent && herald.stats().notifications >= herald.stats().notifies, {
      timeoutMs: SETTLE_TIMEOUT_MS,
      message: `notifications not all heard (raw ${rawReceived}/${rawSent}, Herald ${herald.stats().notifications}/${herald.stats().notifies})`,
    })
  }
}

/** p50 and p99 of commit → heard, or nothing for a mode that notifies nobody. */
function lagPercentiles(samples: readonly number[]): { p50: number; p99: number } | undefined {
  if (samples.length === 0) return undefined
  const sorted = [...samples].sort((a, b) => a - b)
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) }
}

function lag(mode: string, samples: readonly number[]): Record<string, number> {
  const lags = lagPercentiles(samples)
  if (lags === undefined) return {}
  return { [`commitToHeardP50Ms${mode}`]: lags.p50, [`commitToHeardP99Ms${mode}`]: lags.p99 }
}

const MODE_TAGS: Readonly<Record<Mode, string>> = {
  notifyTrigger: '(f)',
  relayTrigger: '(g)',
  none: '(a)',
  secondStatement: "(a')",
  logRow: "(a'')",
  rawNotify: '(b)',
  heraldTx: '(c)',
  heraldRelay: '(e)',
  heraldAfter: '(d)',
}

/** An empty list per mode. */
function byMode(): Record<Mode, number[]> {
  return Object.fromEntries(MODES.map((mode) => [mode, []])) as unknown as Record<Mode, number[]>
}

function lagText(samples: readonly number[]): string {
  const lags = lagPercentiles(samples)
  return lags === undefined ? 'n/a' : `${lags.p50.toFixed(2)} / ${lags.p99.toFixed(2)} ms`
}
