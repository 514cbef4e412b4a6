/**
 * The other instance of `lock-release.ts`: holds one lock of each contender's pair, and on
 * request waits for the other (held by the holder) the contender's way; the moment it holds
 * it, it releases the one it had, so the holder, waiting for that one, times the round trip.
 * IPC carries control only (when to wait, when a round is over), never a timestamp.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { Herald } from '@herald/core'
import { Locks, type Lock } from '@herald/lock'
import postgres from 'postgres'
import {
  APPLICATION,
  LOCK_HEARTBEAT_MS,
  type FromWaiter,
  type LockContenderId,
  type LockPairs,
  type Slot,
  type ToWaiter,
} from './lock-release-messages.js'
import { failureReporter, sendToParent } from './lib/parent-channel.js'

type Start = Extract<ToWaiter, { type: 'start' }>

interface Waiter {
  herald: Herald
  locks: Locks
  /** The contender's sessions: one each, as a process that waits this way would have. */
  floor: postgres.Sql
  polling: postgres.Sql
  pairs: LockPairs
  pollIntervalMs: number
  timeoutMs: number
  /** The slot held per contender (a Herald `Lock` for Herald). */
  heraldLock: Lock
  held: Record<LockContenderId, Slot>
}

let waiter: Waiter | undefined
let closing: Promise<void> | undefined
/** The wait (and the release after it) of the last 'wait' message, per contender. */
const rounds = new Map<LockContenderId, Promise<void>>()
const counts = { floorAcquired: 0, pollingAcquired: 0, pollingFailedTries: 0 }
const allOpened: { herald?: Herald; locks?: Locks; sql: postgres.Sql[] } = { sql: [] }

function send(message: FromWaiter, then?: () => void): void {
  sendToParent(message, then)
}

const fail = failureReporter(() => shutdown())

function shutdown(): Promise<void> {
  closing ??= (async () => {
    // Releases the held lock and closes the lock session; the server drops the sessions' locks.
    await allOpened.locks?.close()
    await Promise.all([allOpened.herald?.close(), ...allOpened.sql.map((sql) => sql.end({ timeout: 1 }))])
  })()
  return closing
}

/** A dedicated session, as a lock holder needs: one connection, never recycled under a lock. */
function session(url: string, applicationName: string): postgres.Sql {
  const sql = postgres(url, {
    max: 1,
    idle_timeout: 0,
    max_lifetime: null,
    fetch_types: false,
    onnotice: () => {},
    connection: { application_name: applicationName },
  })
  allOpened.sql.push(sql)
  return sql
}

async function start(message: Start): Promise<void> {
  const herald = new Herald({ connection: message.url, applicationName: APPLICATION.heraldWaiter })
  allOpened.herald = herald
  // A background error (lost listener, failed sweep, invalid message) would make the figures lie.
  herald.on('error', fail)
  await herald.start()
  const locks = new Locks({
    herald,
    channel: message.channel,
    applicationName: APPLICATION.heraldWaiter,
    heartbeatMs: LOCK_HEARTBEAT_MS,
  })
  allOpened.locks = locks
  locks.on('error', fail)
  locks.on('lost', ({ error }) => fail(error))
  const floor = session(message.url, APPLICATION.floorWaiter)
  const polling = session(message.url, APPLICATION.pollingWaiter)
  const { pairs } = message
  const heraldLock = await locks.acquire(pairs.herald[1], { timeoutMs: message.timeoutMs })
  await floor`select pg_advisory_lock(${pairs.floor[1]}::bigint)`
  await polling`select pg_advisory_lock(${pairs.polling[1]}::bigint)`
  waiter = {
    herald,
    locks,
    floor,
    polling,
    pairs,
    pollIntervalMs: message.pollIntervalMs,
    timeoutMs: message.timeoutMs,
    heraldLock,
    held: { herald: 1, floor: 1, polling: 1 },
  }
  send({ type: 'ready' })
}

/** Waits for `want` the contender's way; once held, releases the slot it held, at once. */
async function waitFor(w: Waiter, contender: LockContenderId, want: Slot): Promise<void> {
  const had = w.held[contender]
  if (had === want) throw new Error(`${contender}: asked to wait for slot ${want}, which the waiter holds`)
  switch (contender) {
    case 'herald': {
      const acquiring = w.locks.acquire(w.pairs.herald[want], { timeoutMs: w.timeoutMs })
      send({ type: 'waiting' })
      const lock = await acquiring
      const released = w.heraldLock.release()
      w.heraldLock = lock
      await released
      break
    }
    case 'floor': {
      // Blocked in the server until the holder's unlock grants it.
      const locking = w.floor`select pg_advisory_lock(${w.pairs.floor[want]}::bigint)`.execute()
      send({ type: 'waiting' })
      await locking
      await unlock(w.floor, w.pairs.floor[had])
      counts.floorAcquired++
      break
    }
    case 'polling': {
      for (let tries = 0; ; tries++) {
        const [row] = await w.polling<{ locked: boolean }[]>`
          select pg_try_advisory_lock(${w.pairs.polling[want]}::bigint) as locked`
        if (row?.locked === true) {
          if (tries === 0) throw new Error('polling: the lock was free before the waiter had waited')
          break
        }
        counts.pollingFailedTries++
        if (tries === 0) send({ type: 'waiting' })
        await sleep(w.pollIntervalMs)
      }
      await unlock(w.polling, w.pairs.polling[had])
      counts.pollingAcquired++
      break
    }
  }
  w.held[contender] = want
}

async function unlock(sql: postgres.Sql, key: string): Promise<void> {
  const [row] = await sql<{ unlocked: boolean }[]>`select pg_advisory_unlock(${key}::bigint) as unlocked`
  if (row?.unlocked !== true) throw new Error(`pg_advisory_unlock(${key}) found the lock not held`)
}

function onMessage(message: ToWaiter): void {
  if (message.type === 'start') {
    start(message).catch(fail)
    return
  }
  if (message.type === 'stop') {
    const stats = waiter?.locks.stats()
    const heraldStats = waiter?.herald.stats()
    shutdown().then(
      () =>
        send(
          {
            type: 'stopped',
            heraldAcquired: stats?.acquired ?? 0,
            heraldSweeps: stats?.sweeps ?? 0,
            heraldNotifications: heraldStats?.notifications ?? 0,
            ...counts,
          },
          () => process.disconnect(),
        ),
      fail,
    )
    return
  }
  const w = waiter
  if (w === undefined) return fail(new Error(`'${message.type}' before 'start' completed`))
  if (message.type === 'wait') {
    const previous = rounds.get(message.contender) ?? Promise.resolve()
    const round = previous.then(() => waitFor(w, message.contender, message.want))
    round.catch(fail)
    rounds.set(message.contender, round)
  } else {
    const round = rounds.get(message.contender) ?? Promise.resolve()
    // A failed round was reported when it failed.
    round.then(
      () => send({ type: 'settled' }),
      () => {},
    )
  }
}

process.on('message', onMessage)
// The holder is gone (crashed or killed): close instead of idling on open connections.
process.on('disconnect', () => void shutdown())
