/**
 * What an invalidation trigger costs the write it rides on: a 10,000-row UPDATE of a table
 * with `installInvalidationTrigger`, against the same UPDATE of an identical table without it.
 */
import { Herald } from '@herald/core'
import { installInvalidationTrigger } from '@herald/lru'
import { uniqueName, waitFor } from '@herald/testing'
import postgres from 'postgres'
import type { Benchmark, BenchContext, RepeatedResult } from './lib/benchmark.js'
import { compare, figures, interleave } from './lib/repetitions.js'
import { median } from './lib/stats.js'

const ROWS = 10_000
const QUICK_ROWS = 2_000
/** UPDATEs timed per contender and repetition; the figure is their median. */
const UPDATES = 5
/** Rounds thrown away first: the trigger function's first call compiles and plans it. */
const DISCARD = 1
/** Every key of an UPDATE reaches the listening Herald well within this. */
const DELIVERY_TIMEOUT_MS = 30_000

type Contender = 'plain' | 'trigger' | 'durable'
const CONTENDERS: readonly Contender[] = ['plain', 'trigger', 'durable']

export const triggerCost: Benchmark = {
  name: 'trigger-cost',
  plan: (context) =>
    `${context.repetitions} repetitions per contender after ${DISCARD} discarded, ` +
    `${UPDATES} UPDATEs of ${rowCount(context).toLocaleString('en-US')} rows each`,
  run,
}

function rowCount(context: BenchContext): number {
  return context.quick ? QUICK_ROWS : ROWS
}

async function run(context: BenchContext): Promise<RepeatedResult> {
  const rows = rowCount(context)
  const channel = uniqueName('bench_trigger')
  const logSchema = uniqueName('bench_herald')
  const tables: Record<Contender, string> = {
    plain: uniqueName('bench_plain'),
    trigger: uniqueName('bench_trigger'),
    durable: uniqueName('bench_durable'),
  }
  // One connection, autocommit: each UPDATE is its own transaction, and its time includes the
  // commit, where the NOTIFYs enter the queue.
  const sql = postgres(context.url, {
    max: 1,
    onnotice: () => {},
    connection: { application_name: 'bench-trigger-cost' },
  })
  const herald = new Herald({ connection: context.url, applicationName: 'bench-trigger-listener' })
  let keysReceived = 0
  let messagesReceived = 0
  let failure: Error | undefined
  herald.on('error', (error) => (failure ??= error))
  try {
    for (const table of Object.values(tables)) {
      await sql.unsafe(
        `create table ${table} (id int primary key, name text not null, org int not null, n int not null)`,
      )
      await sql.unsafe(
        `insert into ${table} select i, 'user ' || i, i % 100, 0 from generate_series(1, ${rows}) as i`,
      )
      await sql.unsafe(`vacuum analyze ${table}`)
    }
    const key = "'user:' || id"
    await installInvalidationTrigger(sql, { table: tables.trigger, cache: 'users', channel, key })
    await installInvalidationTrigger(sql, {
      table: tables.durable,
      cache: 'users',
      channel,
      key,
      durable: { schema: logSchema },
    })
    await herald.start()
    await herald.subscribe<{ k?: string[] }>(channel, (body) => {
      messagesReceived++
      keysReceived += body.k?.length ?? 0
    })

    const notifies: Record<Contender, number[]> = { plain: [], trigger: [], durable: [] }
    const measured = await interleave(
      CONTENDERS,
      { repetitions: context.repetitions, discard: DISCARD },
      async (id) => {
        const times: number[] = []
        for (let i = 0; i < UPDATES; i++) {
          const keysBefore = keysReceived
          const messagesBefore = messagesReceived
          const started = performance.now()
          await sql.unsafe(`update ${tables[id]} set n = n + 1`)
          times.push(performance.now() - started)
          // Outside the timing: every key arrived, so the listener keeps up and the queue stays empty.
          if (id !== 'plain') {
            await waitFor(() => failure !== undefined || keysReceived - keysBefore === rows, {
              timeoutMs: DELIVERY_TIMEOUT_MS,
              message: `${id}: ${keysReceived - keysBefore} of ${rows} keys arrived`,
            })
            if (failure !== undefined) throw failure
          }
          notifies[id].push(messagesReceived - messagesBefore)
          // The same dead tuples to step over in every measurement.
          await sql.unsafe(`vacuum ${tables[id]}`)
        }
        return median(times)
      },
    )
    const [logRows] = await sql<{ rows: number }[]>`
      select count(*)::int as rows from ${sql(logSchema)}.cache_invalidations`
    const durableUpdates = (context.repetitions + DISCARD) * UPDATES
    return {
      kind: 'repeated',
      name: 'trigger-cost',
      title: `Invalidation trigger: cost on a ${rows.toLocaleString('en-US')}-row UPDATE`,
      method:
        `\`update t set n = n + 1\` of all ${rows.toLocaleString('en-US')} rows, autocommit on one connection, ` +
        'timed from send to commit acknowledged; the figure of a repetition is the median of ' +
        `${UPDATES} UPDATEs (each followed, untimed, by VACUUM and a wait until a listening Herald has ` +
        'received every key). Three identical tables: no trigger; installInvalidationTrigger with key ' +
        `${key}; the same with durable: true (one log row per NOTIFY).`,
      unit: { name: 'ms/UPDATE', better: 'lower' },
      repetitions: measured.plain.length,
      discarded: DISCARD,
      contenders: [
        { id: 'plain', name: 'no trigger', label: 'UPDATE, no trigger', figures: figures(measured.plain) },
        {
          id: 'trigger',
          name: 'trigger',
          label: 'UPDATE with invalidation trigger',
          figures: figures(measured.trigger),
        },
        {
          id: 'durable',
          name: 'durable trigger',
          label: 'UPDATE with durable invalidation trigger',
          figures: figures(measured.durable),
        },
      ],
      comparisons: [compare(measured, 'trigger', 'plain'), compare(measured, 'durable', 'plain')],
      checks: {
        rowsPerUpdate: rows,
        // Keys arrive in complete envelopes of up to one NOTIFY each.
        triggerNotifiesPerUpdate: median(notifies.trigger),
        durableNotifiesPerUpdate: median(notifies.durable),
        durableLogRowsPerUpdate: logRows === undefined ? 0 : logRows.rows / durableUpdates,
        plainNotifiesPerUpdate: median(notifies.plain),
        keysReceived,
      },
    }
  } finally {
    await herald.close()
    for (const table of Object.values(tables))
      await sql.unsafe(`drop table if exists ${table}`).catch(() => {})
    await sql.unsafe(`drop schema if exists ${logSchema} cascade`).catch(() => {})
    await sql.end({ timeout: 1 })
  }
}
