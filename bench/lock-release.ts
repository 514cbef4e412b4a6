/**
 * Release → waiter holds the lock, across processes, for @herald/lock against a waiter blocked
 * in `pg_advisory_lock` (the floor: the server grants it during the unlock) and a waiter that
 * polls `pg_try_advisory_lock` every 50 ms.
 *
 * Latency is half a round trip on one clock: the holder (this process) holds lock 0 of a pair
 * and the waiter (another process) lock 1; the waiter waits for 0, the holder starts waiting
 * for 1, then releases 0. The waiter, the moment it holds 0, releases 1, and the holder times
 * release of 0 → holding 1: two hand-overs, each a release → the other side holds it. Then the
 * two swap roles for the next round. IPC only says when to wait and when a round is over.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { Herald } from '@herald/core'
import { Locks, type Lock } from '@herald/lock'
import { uniqueName } from '@herald/testing'
import postgres from 'postgres'
import type { Benchmark, BenchContext, BenchmarkResult, ContenderResult } from './lib/benchmark.js'
import { Child } from './lib/child.js'
import { summarize } from './lib/stats.js'
import { withTimeout } from './lib/timeout.js'
import {
  APPLICATION,
  LOCK_HEARTBEAT_MS,
  type FromWaiter,
  type LockContenderId,
  type LockPairs,
  type Slot,
  type ToWaiter,
} from './lock-release-messages.js'

const WAITER = 'bench/lock-release-waiter.ts'
/** Spawning, tsx compiling, a Herald, three sessions, the token table: seconds at most. */
const READY_TIMEOUT_MS = 30_000
/** A hand-over takes a millisecond or so (polling: up to 50); one that takes this long was lost. */
const SAMPLE_TIMEOUT_MS = 5_000
/** The polling contender's interval, and the span of the random pause before each release. */
const POLL_INTERVAL_MS = 50
/**
 * After the waiter says it has begun to wait: time for its first try to come back (Herald)
 * or its lock request to reach the server (floor), checked in pg_stat_activity afterwards.
 */
const SETTLE_MS = 5
/** The goal stated in the issue: Herald's p50 within 1.5× a waiter blocked in pg_advisory_lock. */
const TARGET_P50_RATIO = 1.5
/**
 * Samples per contender, as fractions of BENCH_SAMPLES / BENCH_WARMUP (2,000 / 200 by
 * default: 300 for Herald and the floor, 60 for polling, after 30 and 6). A polling hand-over
 * takes some 25 ms, and its spread is the interval, not noise: fewer samples say as much.
 */
const SHARE = { herald: 0.15, floor: 0.15, polling: 0.03 } as const satisfies Record<LockContenderId, number>
const MIN_SAMPLES = 10
const MIN_WARMUP = 2

interface Holder {
  readonly id: LockContenderId
  readonly name: string
  readonly label: string
  /** Starts waiting for `slot`; resolves with `performance.now()` the moment it is held. */
  acquire(slot: Slot): Promise<number>
  /** Releases `slot`, which this side holds. */
  release(slot: Slot): Promise<void>
  /** Whether both sides are parked in their wait, judged from pg_stat_activity. */
  parked(activity: readonly Activity[]): boolean
  close(): Promise<void>
}

interface Activity {
  readonly app: string
  readonly state: string | null
  readonly waitType: string | null
  readonly query: string | null
}

interface Plan {
  readonly warmup: number
  readonly samples: number
}

export const lockRelease: Benchmark = {
  name: 'lock-release',
  plan: (context) => {
    const { herald, polling } = plans(context)
    return (
      `${herald.samples} samples for Herald and the floor after ${herald.warmup} warm-up, ` +
      `${polling.samples} for polling after ${polling.warmup}`
    )
  },
  run,
}

function plans(context: BenchContext): Record<LockContenderId, Plan> {
  const plan = (share: number): Plan => ({
    samples: Math.max(MIN_SAMPLES, Math.round(context.samples * share)),
    warmup: Math.max(MIN_WARMUP, Math.round(context.warmup * share)),
  })
  return { herald: plan(SHARE.herald), floor: plan(SHARE.floor), polling: plan(SHARE.polling) }
}

async function run(context: BenchContext): Promise<BenchmarkResult> {
  const pairs: LockPairs = {
    herald: [uniqueName('bench_lock_0'), uniqueName('bench_lock_1')],
    floor: [randomKey(), randomKey()],
    polling: [randomKey(), randomKey()],
  }
  const channel = uniqueName('bench_lock_release')
  const waiter = new Child<ToWaiter, FromWaiter>(WAITER)
  const observer = postgres(context.url, {
    max: 1,
    onnotice: () => {},
    connection: { application_name: 'bench-lock-observer' },
  })
  const herald = new Herald({ connection: context.url, applicationName: APPLICATION.heraldHolder })
  const locks = new Locks({
    herald,
    channel,
    applicationName: APPLICATION.heraldHolder,
    heartbeatMs: LOCK_HEARTBEAT_MS,
  })
  let backgroundError: Error | undefined
  herald.on('error', (error) => (backgroundError ??= error))
  locks.on('error', (error) => (backgroundError ??= error))
  locks.on('lost', ({ error }) => (backgroundError ??= error))
  const holders: Holder[] = []
  try {
    await herald.start()
    holders.push(
      await heraldHolder(locks, pairs.herald),
      await sessionHolder('floor', context.url, pairs.floor),
      await sessionHolder('polling', context.url, pairs.polling),
    )
    // The holder holds slot 0 of every pair (and the token table exists) before the waiter starts.
    waiter.send({
      type: 'start',
      url: context.url,
      pairs,
      channel,
      pollIntervalMs: POLL_INTERVAL_MS,
      timeoutMs: SAMPLE_TIMEOUT_MS,
    })
    await waiter.receive('ready', READY_TIMEOUT_MS)
    const plan = plans(context)
    const { latencies, parkChecks } = await measure(holders, plan, waiter, observer)
    if (backgroundError !== undefined) throw backgroundError
    waiter.send({ type: 'stop' }, { last: true })
    const stopped = await waiter.receive('stopped', READY_TIMEOUT_MS)
    const rounds = (id: LockContenderId): number => plan[id].warmup + plan[id].samples
    const expected = {
      heraldAcquired: rounds('herald') + 1,
      floorAcquired: rounds('floor'),
      pollingAcquired: rounds('polling'),
    }
    for (const [name, value] of Object.entries(expected)) {
      const seen = stopped[name as keyof typeof expected]
      if (seen !== value) throw new Error(`the waiter counted ${seen} ${name}, expected ${value}`)
    }
    const results: ContenderResult[] = holders.map((holder) => ({
      id: holder.id,
      name: holder.name,
      label: holder.label,
      summary: summarize(latencies[holder.id]),
      discarded: plan[holder.id].warmup,
    }))
    const byId = (id: LockContenderId): ContenderResult => {
      const result = results.find((candidate) => candidate.id === id)
      if (result === undefined) throw new Error(`no result for ${id}`)
      return result
    }
    const [ofHerald, floor, polling] = [
      byId('herald').summary,
      byId('floor').summary,
      byId('polling').summary,
    ]
    const p50 = ofHerald.p50 / floor.p50
    const stats = herald.stats()
    const lockStats = locks.stats()
    return {
      kind: 'latency',
      name: 'lock-release',
      title: 'Lock release → waiter holds it, across processes',
      method:
        'Half the round trip of two hand-overs, timed with performance.now() in the holder: it releases the lock the ' +
        'waiter (another process) waits for while waiting for the one the waiter holds, which the waiter releases the ' +
        'moment it holds the first. Each release comes after both sides are seen parked in pg_stat_activity and a ' +
        `random 0–${POLL_INTERVAL_MS} ms pause (a random phase for the polling loops); one hand-over in flight; ` +
        'contenders in random order each round.',
      contenders: results,
      comparisons: [
        {
          of: 'herald',
          to: 'floor',
          p50,
          p99: ofHerald.p99 / floor.p99,
          target: { maxP50Ratio: TARGET_P50_RATIO, met: p50 <= TARGET_P50_RATIO },
        },
        { of: 'herald', to: 'polling', p50: ofHerald.p50 / polling.p50, p99: ofHerald.p99 / polling.p99 },
      ],
      checks: {
        heraldRounds: rounds('herald'),
        floorRounds: rounds('floor'),
        pollingRounds: rounds('polling'),
        // Each contender's samples: both sides were seen parked before the release, after
        // SETTLE_MS; a check beyond one per round means a side was slow to park.
        parkChecks,
        // One release message per Herald hand-over, and the waiter woke by it, not by a sweep.
        holderHeraldPublished: stats.published,
        holderHeraldNotifies: stats.notifies,
        holderLocksAcquired: lockStats.acquired,
        holderLocksSweeps: lockStats.sweeps,
        waiterLocksAcquired: stopped.heraldAcquired,
        waiterLocksSweeps: stopped.heraldSweeps,
        waiterHeraldNotifications: stopped.heraldNotifications,
        waiterFloorAcquired: stopped.floorAcquired,
        waiterPollingAcquired: stopped.pollingAcquired,
        waiterPollingFailedTries: stopped.pollingFailedTries,
      },
    }
  } catch (error) {
    await waiter.kill()
    throw error
  } finally {
    await locks.close()
    await Promise.all([herald.close(), ...holders.map((holder) => holder.close())])
    // The token rows of this run's two names: a DATABASE_URL server keeps no litter.
    await observer`delete from herald.lock_tokens where name in ${observer(pairs.herald)}`.catch(() => {})
    await observer.end({ timeout: 1 })
    if ((await waiter.close()) === 'killed') {
      console.warn(`${WAITER} did not exit after closing everything; it was killed`)
    }
  }
}

/** A random advisory-lock key, as a decimal string: far from the small integers apps use. */
function randomKey(): string {
  return randomBytes(8).readBigInt64BE(0).toString()
}

async function heraldHolder(locks: Locks, names: readonly [string, string]): Promise<Holder> {
  const held = new Map<Slot, Lock>()
  held.set(0, await locks.acquire(names[0], { timeoutMs: READY_TIMEOUT_MS }))
  return {
    id: 'herald',
    name: 'Herald',
    label: 'Herald: lock.release() → locks.acquire() resolves',
    acquire: (slot) =>
      locks.acquire(names[slot], { timeoutMs: SAMPLE_TIMEOUT_MS }).then((lock) => {
        const at = performance.now()
        held.set(slot, lock)
        return at
      }),
    release: (slot) => {
      const lock = held.get(slot)
      held.delete(slot)
      return lock === undefined ? Promise.reject(new Error(`Herald: slot ${slot} not held`)) : lock.release()
    },
    // Both lock sessions idle: the waiter's last statement its failed try, so it waits for a wake-up.
    parked: (activity) =>
      activity.some(
        (row) =>
          row.app === `${APPLICATION.heraldWaiter}-locks` &&
          row.state === 'idle' &&
          row.query?.includes('pg_try_advisory_lock') === true,
      ) && activity.some((row) => row.app === `${APPLICATION.heraldHolder}-locks` && row.state === 'idle'),
    close: async () => {},
  }
}

/**
 * The floor and the polling loop: two dedicated sessions on the holder's side, since a session
 * blocked in `pg_advisory_lock` cannot send the unlock; they take turns holding and waiting.
 */
async function sessionHolder(
  id: 'floor' | 'polling',
  url: string,
  keys: readonly [string, string],
): Promise<Holder> {
  const apps = id === 'floor' ? APPLICATION.floorHolder : APPLICATION.pollingHolder
  const sessions = apps.map((app) =>
    postgres(url, {
      max: 1,
      idle_timeout: 0,
      max_lifetime: null,
      fetch_types: false,
      onnotice: () => {},
      connection: { application_name: app },
    }),
  )
  const session = (index: number): postgres.Sql => sessions[index] as postgres.Sql
  // Which session holds each slot.
  const owner = new Map<Slot, number>([[0, 0]])
  await session(0)`select pg_advisory_lock(${keys[0]}::bigint)`
  const waitingSession = (slot: Slot): number => {
    const other = owner.get(slot === 0 ? 1 : 0)
    return other === undefined ? 0 : 1 - other
  }
  const floorAcquire = (slot: Slot): Promise<number> => {
    const index = waitingSession(slot)
    return session(index)`select pg_advisory_lock(${keys[slot]}::bigint)`.then(() => {
      const at = performance.now()
      owner.set(slot, index)
      return at
    })
  }
  const pollingAcquire = async (slot: Slot): Promise<number> => {
    const index = waitingSession(slot)
    // A random phase: the waiter's release lands anywhere in this loop's interval.
    await sleep(Math.random() * POLL_INTERVAL_MS)
    for (;;) {
      const [row] = await session(index)<{ locked: boolean }[]>`
        select pg_try_advisory_lock(${keys[slot]}::bigint) as locked`
      if (row?.locked === true) {
        const at = performance.now()
        owner.set(slot, index)
        return at
      }
      await sleep(POLL_INTERVAL_MS)
    }
  }
  return {
    id,
    name: id === 'floor' ? 'pg_advisory_lock' : 'polling 50 ms',
    label:
      id === 'floor'
        ? 'pg_advisory_lock: unlock → blocked lock call returns'
        : `polling: unlock → pg_try_advisory_lock every ${POLL_INTERVAL_MS} ms succeeds`,
    acquire: id === 'floor' ? floorAcquire : pollingAcquire,
    release: async (slot) => {
      const index = owner.get(slot)
      if (index === undefined) throw new Error(`${id}: slot ${slot} not held`)
      owner.delete(slot)
      const [row] = await session(index)<{ unlocked: boolean }[]>`
        select pg_advisory_unlock(${keys[slot]}::bigint) as unlocked`
      if (row?.unlocked !== true) throw new Error(`${id}: pg_advisory_unlock found slot ${slot} not held`)
    },
    // The floor: the waiter and one holder session blocked on an advisory lock in the server.
    // Polling: the waiter said so after its first failed try; there is nothing to block in.
    parked: (activity) =>
      id === 'polling' ||
      activity.filter(
        (row) =>
          (row.app === APPLICATION.floorWaiter || apps.some((app) => app === row.app)) &&
          row.waitType === 'Lock',
      ).length === 2,
    close: async () => {
      await Promise.all(sessions.map((sql) => sql.end({ timeout: 1 })))
    },
  }
}

/**
 * Rounds of one hand-over per contender, in a fresh random order each round, so drift in the
 * machine's load lands on all alike; polling, with fewer samples, takes part in rounds spread
 * evenly over the run.
 */
async function measure(
  holders: readonly Holder[],
  plan: Record<LockContenderId, Plan>,
  waiter: Child<ToWaiter, FromWaiter>,
  observer: postgres.Sql,
): Promise<{ latencies: Record<LockContenderId, number[]>; parkChecks: number }> {
  const latencies: Record<LockContenderId, number[]> = { herald: [], floor: [], polling: [] }
  const done: Record<LockContenderId, number> = { herald: 0, floor: 0, polling: 0 }
  const total = (id: LockContenderId): number => plan[id].warmup + plan[id].samples
  const rounds = Math.max(...holders.map((holder) => total(holder.id)))
  // Which slot the holder holds, per contender: it starts with 0 of every pair.
  const holds: Record<LockContenderId, Slot> = { herald: 0, floor: 0, polling: 0 }
  let parkChecks = 0
  for (let round = 0; round < rounds; round++) {
    const taking = holders.filter((holder) => {
      const share = total(holder.id) / rounds
      return Math.floor((round + 1) * share) > Math.floor(round * share)
    })
    for (const holder of shuffled(taking)) {
      const want = holds[holder.id]
      const { ms, checks } = await Promise.race([handOver(holder, want, waiter, observer), waiter.failure])
      holds[holder.id] = want === 0 ? 1 : 0
      parkChecks += checks
      if (done[holder.id]++ >= plan[holder.id].warmup) latencies[holder.id].push(ms)
    }
  }
  return { latencies, parkChecks }
}

/**
 * One round trip: the waiter waits for `give` (held here), this side for the other slot;
 * release `give` and time until the other slot is held here. Resolves with half of it.
 */
async function handOver(
  holder: Holder,
  give: Slot,
  waiter: Child<ToWaiter, FromWaiter>,
  observer: postgres.Sql,
): Promise<{ ms: number; checks: number }> {
  const back: Slot = give === 0 ? 1 : 0
  const regained = holder.acquire(back)
  regained.catch(() => {})
  waiter.send({ type: 'wait', contender: holder.id, want: give })
  await waiter.receive('waiting', SAMPLE_TIMEOUT_MS)
  await sleep(SETTLE_MS)
  const checks = await untilParked(holder, observer)
  await sleep(Math.random() * POLL_INTERVAL_MS)
  const releasedAt = performance.now()
  const released = holder.release(give)
  released.catch(() => {})
  const heldAt = await withTimeout(regained, SAMPLE_TIMEOUT_MS, `${holder.id}: the lock never came back`)
  await released
  waiter.send({ type: 'settle', contender: holder.id })
  await waiter.receive('settled', SAMPLE_TIMEOUT_MS)
  return { ms: (heldAt - releasedAt) / 2, checks }
}

/** Queries pg_stat_activity until both sides are parked; returns how many queries it took. */
async function untilParked(holder: Holder, observer: postgres.Sql): Promise<number> {
  // Shorter than the waiter's own timeout: sides that never park are reported as such, not as
  // a waiter that was never woken.
  const deadline = performance.now() + SAMPLE_TIMEOUT_MS / 2
  for (let checks = 1; ; checks++) {
    const activity = await observer<Activity[]>`
      select application_name as app, state, wait_event_type as "waitType", query
      from pg_stat_activity where application_name like 'bench-lock-%'`
    if (holder.parked(activity)) return checks
    if (performance.now() > deadline) throw new Error(`${holder.id}: the two sides never parked`)
    await sleep(1)
  }
}

function shuffled<T>(items: readonly T[]): T[] {
  const copy = [...items]
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[copy[i], copy[j]] = [copy[j] as T, copy[i] as T]
  }
  return copy
}
