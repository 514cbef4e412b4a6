/** The IPC protocol between `lock-release.ts` (the holder) and `lock-release-waiter.ts`. */

/**
 * The lock sessions' heartbeat, on both sides: far longer than a run. The holder recognises a
 * parked waiter by its lock session's last statement (the failed try); a heartbeat `select 1`
 * on that session in between would hide it, and the hand-over would never start.
 */
export const LOCK_HEARTBEAT_MS = 600_000

/** `herald`: @herald/lock; `floor`: a session blocked in pg_advisory_lock; `polling`: pg_try_advisory_lock every 50 ms. */
export type LockContenderId = 'herald' | 'floor' | 'polling'

/** Which lock of a contender's pair: the holder and the waiter hand them back and forth. */
export type Slot = 0 | 1

/** Every contender's pair of locks: names for Herald, advisory-lock keys (decimal bigints) for the others. */
export interface LockPairs {
  readonly herald: readonly [string, string]
  readonly floor: readonly [string, string]
  readonly polling: readonly [string, string]
}

export type ToWaiter =
  | {
      readonly type: 'start'
      readonly url: string
      readonly pairs: LockPairs
      /** Herald's release channel, unique to the run. */
      readonly channel: string
      readonly pollIntervalMs: number
      /** Every lock the waiter takes carries this timeout: a lost wake-up fails instead of hanging. */
      readonly timeoutMs: number
    }
  /**
   * Wait for `want` of `contender`'s pair (held by the holder) while holding the other; once
   * holding `want`, release the other at once. Answered with 'waiting' as soon as the wait has
   * begun (polling: after its first failed try).
   */
  | { readonly type: 'wait'; readonly contender: LockContenderId; readonly want: Slot }
  /** Answered with 'settled' once the release that followed the last 'wait' has completed. */
  | { readonly type: 'settle'; readonly contender: LockContenderId }
  | { readonly type: 'stop' }

export type FromWaiter =
  /** Connected, and holding slot 1 of every pair (the holder holds slot 0). */
  | { readonly type: 'ready' }
  | { readonly type: 'waiting' }
  | { readonly type: 'settled' }
  | {
      readonly type: 'stopped'
      /** Locks the waiter's `Locks` acquired: one per round, plus its first. */
      readonly heraldAcquired: number
      /** Sweep queries the waiter's `Locks` ran: a wake-up by sweep rather than by message. */
      readonly heraldSweeps: number
      /** Notifications the waiter's Herald received on the release channel (its own included). */
      readonly heraldNotifications: number
      readonly floorAcquired: number
      readonly pollingAcquired: number
      /** pg_try_advisory_lock calls that found the lock taken. */
      readonly pollingFailedTries: number
    }
  | { readonly type: 'failed'; readonly message: string }

/** Application names, so the holder can see from pg_stat_activity that the waiter is parked. */
export const APPLICATION = {
  /** Herald's lock session gets `-locks` appended by `Locks`. */
  heraldWaiter: 'bench-lock-waiter',
  heraldHolder: 'bench-lock-holder',
  floorWaiter: 'bench-lock-floor-waiter',
  floorHolder: ['bench-lock-floor-holder-0', 'bench-lock-floor-holder-1'],
  pollingWaiter: 'bench-lock-polling-waiter',
  pollingHolder: ['bench-lock-polling-holder-0', 'bench-lock-polling-holder-1'],
} as const
