/**
 * Where the time of a Herald lock hand-over goes, for when `lock-release` misses its target.
 * Not a benchmark (not in run.ts): instruments @herald/lock from the outside, in one process
 * and on one clock, and times the statements a hand-over is made of on their own.
 *
 *   node --conditions=@herald/source --import tsx bench/lock-release-profile.ts
 *
 * Part 1, a hand-over between two Herald instances (each its own Herald, listener, publisher
 * and lock session, as two processes would have, but one event loop): release() called →
 * the unlock answered (Locks calls herald.publish, wrapped here) → the release NOTIFY's
 * statement answered (release() resolves) → the waiter's Herald dispatches it (a second
 * subscription on the release channel, called right after the Locks one) → acquire resolves.
 *
 * Part 2, the statements on their own, each on a dedicated session, interleaved in random
 * order: a trivial round trip, the unlock, Herald's try (pg_try_advisory_lock and the fencing
 * token upsert in one statement) against a bare pg_try_advisory_lock, NOTIFY → LISTEN
 * handler, a waiter blocked in pg_advisory_lock (the floor), and unlock + NOTIFY in one
 * statement → LISTEN handler (what a release could cost with one round trip fewer).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { Herald } from '@herald/core'
import { Locks, type Lock } from '@herald/lock'
import { uniqueName } from '@herald/testing'
import postgres from 'postgres'
import { readOptions } from './lib/options.js'
import { benchServer } from './lib/postgres.js'
import { summarize } from './lib/stats.js'

/** Waiters park in well under this; the floor's blocked lock request reaches the server. */
const SETTLE_MS = 5

interface Side {
  readonly herald: Herald
  readonly locks: Locks
  /** performance.now() of the last herald.publish call (Locks: right after the unlock). */
  publishCalledAt: number
  /** performance.now() of the last release message this side's Herald dispatched. */
  notifiedAt: number
}

async function side(url: string, channel: string, name: string): Promise<Side> {
  const herald = new Herald({ connection: url, applicationName: name })
  herald.on('error', (error) => {
    console.error(`${name}: ${error.message}`)
    process.exitCode = 1
  })
  await herald.start()
  const locks = new Locks({ herald, channel, applicationName: name })
  const state: Side = { herald, locks, publishCalledAt: 0, notifiedAt: 0 }
  const publish = herald.publish.bind(herald)
  herald.publish = (...args) => {
    state.publishCalledAt = performance.now()
    return publish(...args)
  }
  // Locks subscribes on its first acquire: take and give back a lock so its handler comes first.
  await (await locks.acquire(uniqueName('profile_warm'))).release()
  await herald.subscribe(channel, () => {
    state.notifiedAt = performance.now()
  })
  return state
}

async function handOvers(url: string, count: number): Promise<Record<string, number[]>> {
  const channel = uniqueName('profile_lock_release')
  const name = uniqueName('profile_lock')
  const sides = [await side(url, channel, 'profile-a'), await side(url, channel, 'profile-b')] as const
  const phases: Record<string, number[]> = {
    'unlock (release() → herald.publish called)': [],
    'release NOTIFY statement (publish called → release() resolves)': [],
    'NOTIFY delivery (publish called → waiter dispatches it)': [],
    'wake → held (dispatch → acquire resolves: loop + try + token upsert)': [],
    'total (release() → acquire resolves)': [],
  }
  const push = (phase: string, value: number): void => {
    phases[phase]?.push(value)
  }
  let lock: Lock = await sides[0].locks.acquire(name)
  try {
    for (let i = 0; i < count; i++) {
      const [holder, waiter] = i % 2 === 0 ? sides : [sides[1], sides[0]]
      const acquiring = waiter.locks.acquire(name, { timeoutMs: 5_000 })
      await sleep(SETTLE_MS + Math.random() * 5)
      const releasedAt = performance.now()
      let publishedAt = 0
      const released = lock.release().then(() => {
        publishedAt = performance.now()
      })
      lock = await acquiring
      const heldAt = performance.now()
      await released
      if (i < count / 10) continue
      push('unlock (release() → herald.publish called)', holder.publishCalledAt - releasedAt)
      push(
        'release NOTIFY statement (publish called → release() resolves)',
        publishedAt - holder.publishCalledAt,
      )
      push(
        'NOTIFY delivery (publish called → waiter dispatches it)',
        waiter.notifiedAt - holder.publishCalledAt,
      )
      push('wake → held (dispatch → acquire resolves: loop + try + token upsert)', heldAt - waiter.notifiedAt)
      push('total (release() → acquire resolves)', heldAt - releasedAt)
    }
  } finally {
    await lock.release()
    for (const { locks, herald } of sides) {
      await locks.close()
      await herald.close()
    }
  }
  return phases
}

function session(url: string, name: string): postgres.Sql {
  return postgres(url, {
    max: 1,
    idle_timeout: 0,
    max_lifetime: null,
    fetch_types: false,
    onnotice: () => {},
    connection: { application_name: name },
  })
}

/** Like `lockKey`: a random signed 64-bit key, as a decimal string. */
function randomKey(): string {
  return BigInt.asIntN(64, BigInt(Math.floor(Math.random() * 2 ** 53)) << 11n).toString()
}

interface Probe {
  setup?(): unknown
  /** Resolves with `performance.now()` at the far end (one way), or with anything (round trip). */
  timed(): Promise<unknown>
  teardown?(): unknown
}

async function statements(url: string, count: number): Promise<Record<string, number[]>> {
  const a = session(url, 'profile-a')
  const b = session(url, 'profile-b')
  const listener = postgres(url, { max: 1, onnotice: () => {} })
  const channel = uniqueName('profile_raw')
  // A release message as Locks sends it, enveloped as Herald does.
  const payload = JSON.stringify({ v: 1, o: 'abcdefgh', k: 'release', b: { k: randomKey() } })
  let onNotify: (() => void) | undefined
  let blocked: Promise<number> = Promise.resolve(0)
  await listener.listen(channel, () => onNotify?.())
  const notified = (): Promise<number> =>
    new Promise((resolve) => {
      onNotify = () => resolve(performance.now())
    })
  const tokenName = uniqueName('profile_token')
  let key = randomKey()
  const held = async (): Promise<void> => {
    key = randomKey()
    await a`select pg_advisory_lock(${key}::bigint)`
  }
  const fresh = (): void => {
    key = randomKey()
  }
  const unlock = async (): Promise<void> => {
    await a`select pg_advisory_unlock(${key}::bigint)`
  }
  // Each probe: an untimed setup, a pause (every timed statement starts from idle sessions,
  // as a release does after its work), the timed part, an untimed teardown.
  const probes: Record<string, Probe> = {
    'select 1 (round trip)': { timed: () => a`select 1` },
    'select pg_advisory_unlock(k) (round trip)': { setup: held, timed: unlock },
    "Herald's try: pg_try_advisory_lock + token upsert (round trip)": {
      setup: fresh,
      timed: () => a`
        with attempt as (select pg_try_advisory_lock(${key}::bigint) as locked)
        insert into herald.lock_tokens as t (name, token)
        select ${tokenName}, 1 from attempt where locked
        on conflict (name) do update set token = t.token + 1, acquired_at = now()
        returning token::text as token`,
      teardown: unlock,
    },
    'select pg_try_advisory_lock(k) alone (round trip)': {
      setup: fresh,
      timed: () => a`select pg_try_advisory_lock(${key}::bigint)`,
      teardown: unlock,
    },
    'select pg_notify → LISTEN handler (one way)': {
      timed: async () => {
        const arrived = notified()
        await a`select pg_notify(${channel}, ${payload})`
        return arrived
      },
    },
    'floor: unlock → blocked pg_advisory_lock returns (one way)': {
      setup: async () => {
        await held()
        blocked = b`select pg_advisory_lock(${key}::bigint)`.then(() => performance.now())
      },
      timed: async () => {
        await unlock()
        return blocked
      },
      teardown: () => b`select pg_advisory_unlock(${key}::bigint)`,
    },
    'unlock + pg_notify in one statement → LISTEN handler (one way)': {
      setup: held,
      timed: async () => {
        const arrived = notified()
        await a`select pg_advisory_unlock(${key}::bigint), pg_notify(${channel}, ${payload})`
        return arrived
      },
    },
  }
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(probes).map((name) => [name, []]))
  try {
    // The token table, as Locks creates it (the hand-overs ran first and made it).
    for (let i = 0; i < count; i++) {
      const names = Object.keys(probes).sort(() => Math.random() - 0.5)
      for (const name of names) {
        const probe = probes[name] as Probe
        await probe.setup?.()
        await sleep(SETTLE_MS + Math.random() * 5)
        const t0 = performance.now()
        const result = await probe.timed()
        // A one-way probe resolves with when the far end saw it; a round trip with nothing.
        const ms = (typeof result === 'number' ? result : performance.now()) - t0
        await probe.teardown?.()
        if (i >= count / 10) times[name]?.push(ms)
      }
    }
  } finally {
    await a`delete from herald.lock_tokens where name = ${tokenName}`.catch(() => {})
    await Promise.all([a.end(), b.end(), listener.end()])
  }
  return times
}

function print(title: string, figures: Record<string, number[]>): void {
  const rows = Object.entries(figures).map(([name, values]) => [name, summarize(values)] as const)
  const width = Math.max(...rows.map(([name]) => name.length))
  const cell = (value: number): string => value.toFixed(3).padStart(8)
  console.log(`\n${title} (ms, ${rows[0]?.[1].samples ?? 0} samples each)\n`)
  console.log(`  ${''.padEnd(width)}${['p50', 'p90', 'p99', 'mean'].map((c) => c.padStart(8)).join('')}`)
  for (const [name, s] of rows) {
    console.log(`  ${name.padEnd(width)}${cell(s.p50)}${cell(s.p90)}${cell(s.p99)}${cell(s.mean)}`)
  }
}

async function main(): Promise<void> {
  const options = readOptions(process.env)
  const count = Math.round(options.samples * 0.15) + Math.round(options.warmup * 0.15)
  await using server = await benchServer()
  console.log(`PostgreSQL ${server.version} (${server.source}); ${count} rounds, the first tenth discarded`)
  print('Herald hand-over, in one process', await handOvers(server.url, count))
  print('Statements on their own', await statements(server.url, count))
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error('profile failed:', error)
    process.exit(1)
  },
)
