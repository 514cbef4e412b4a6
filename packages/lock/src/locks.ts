import {
  notifyStatement,
  assertWaitOptions,
  HeraldError,
  raceWait,
  safeEmit,
  systemClock,
  clientRunner,
  toConnectionError,
  type WaitOptions,
} from '@herald/core'
import { EventEmitter } from 'eventemitter3'
import type { LocksEvents } from './events.js'
import { HolderSession } from './holder-session.js'
import { LocalQueue } from './local-queue.js'
import { Lock } from './lock.js'
import { assertLockName, lockKey } from './lock-key.js'
import { resolveLocksOptions, type LocksOptions, type ResolvedLocksOptions } from './options.js'
import { RELEASE_KIND, ReleaseWatch } from './release-watch.js'
import { ensureLockTables } from './schema.js'

export interface LocksStats {
  /** Locks this process holds now. */
  readonly held: number
  /** Callers waiting for a lock or a release, in this process. */
  readonly waiting: number
  readonly acquired: number
  readonly released: number
  readonly lost: number
  /** Sweep queries run (one per interval while anyone waits, and after each reconnect). */
  readonly sweeps: number
}

/**
 * Distributed locks on PostgreSQL advisory locks. Waiting costs no connection and no polling
 * loop: waiters sleep until a release message, a once-a-second sweep (for holders that died
 * without sending one) or a reconnect, then prove ownership by taking the advisory lock.
 */
export class Locks extends EventEmitter<LocksEvents> implements AsyncDisposable {
  readonly #options: ResolvedLocksOptions
  /** Unties this from its Herald's close(), once closed by itself. */
  readonly #untie: () => void
  readonly #local = new LocalQueue()
  readonly #watch: ReleaseWatch
  readonly #session: HolderSession
  readonly #held = new Set<Lock>()
  /** Locks still occupying their name's in-process slot. */
  readonly #slots = new Set<Lock>()
  #prepared: Promise<unknown> | undefined
  #closed = false
  #waiting = 0
  #acquired = 0
  #released = 0
  #lost = 0

  constructor(options: LocksOptions) {
    super()
    this.#options = resolveLocksOptions(options)
    this.#untie = this.#options.herald.closeWith(this)
    const { herald, channel, sweepMs, heartbeatMs, schema, applicationName } = this.#options
    this.#watch = new ReleaseWatch({ herald, channel, sweepMs, onError: (error) => this.#emitError(error) })
    this.#session = new HolderSession({
      connection: this.#options.lockConnection ?? herald.listenConnection,
      applicationName,
      heartbeatMs,
      schema,
      onLost: (error) => this.#loseAll(error),
      echo: async (channel, payload) => {
        // No parameters: the publish connection may go through a pooler (see notifyStatement).
        await herald.sql.unsafe(notifyStatement(channel, payload))
      },
    })
  }

  /**
   * Waits until the lock is free, then takes it. No busy polling: see the class comment.
   * @throws HeraldError `INVALID_KEY`, `TIMEOUT`, `ABORTED`, `CLOSED`, `CONNECTION_FAILED`
   */
  async acquire(name: string, options: WaitOptions = {}): Promise<Lock> {
    const key = lockKey(assertLockName(name))
    assertWaitOptions(options)
    this.#assertOpen()
    const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs
    const remaining = (): WaitOptions => ({
      signal: options.signal,
      timeoutMs: deadline === undefined ? undefined : Math.max(0, deadline - Date.now()),
    })
    this.#waiting++
    let slotHandedOff = false
    try {
      await this.#local.enter(name, remaining())
      try {
        await raceWait(this.#prepare(), remaining(), systemClock, `acquire ${name}`)
        for (;;) {
          this.#assertOpen()
          // Register before trying: a release between a failed try and the wait still wakes us.
          const wait = this.#watch.wait(key)
          try {
            const attempt = this.#try(name, key)
            let lock: Lock | undefined
            try {
              lock = await raceWait(attempt, remaining(), systemClock, `acquire ${name}`)
            } catch (error) {
              // Given up while the attempt ran: a lock it still gets goes straight back, and
              // only once the attempt has settled may the next caller in this process go ahead.
              slotHandedOff = true
              attempt
                .then(
                  (late) => (late === undefined ? this.#local.leave(name) : late.release()),
                  () => this.#local.leave(name),
                )
                .catch(() => {})
              throw error
            }
            if (lock !== undefined) return lock
            await raceWait(wait.woken, remaining(), systemClock, `acquire ${name}`)
          } finally {
            wait.cancel()
          }
        }
      } catch (error) {
        if (!slotHandedOff) this.#local.leave(name)
        throw error
      }
    } finally {
      this.#waiting--
    }
  }

  /** Takes the lock if it is free right now, else `undefined`. */
  async tryAcquire(name: string): Promise<Lock | undefined> {
    const key = lockKey(assertLockName(name))
    this.#assertOpen()
    if (!this.#local.tryEnter(name)) return undefined
    try {
      await this.#prepare()
      const lock = await this.#try(name, key)
      if (lock === undefined) this.#local.leave(name)
      return lock
    } catch (error) {
      this.#local.leave(name)
      throw error
    }
  }

  /**
   * Resolves once the lock is not held. It may resolve on the release message itself, so a
   * forged message (anyone who can connect can NOTIFY) can wake it early: use `acquire` when
   * exclusion matters.
   */
  async waitForRelease(name: string, options: WaitOptions = {}): Promise<void> {
    const key = lockKey(assertLockName(name))
    assertWaitOptions(options)
    this.#assertOpen()
    this.#waiting++
    try {
      await raceWait(this.#watch.ready(), options, systemClock, `waitForRelease ${name}`)
      const wait = this.#watch.wait(key)
      try {
        const holder = (await this.#watch.holders([key])).get(key.toString())
        if (holder === undefined) return
        // Waiting for this holder to let go: if the lock changes hands between two sweeps, the
        // release happened, even though the lock is never seen free.
        wait.heldBy(holder)
        await raceWait(wait.woken, options, systemClock, `waitForRelease ${name}`)
      } finally {
        wait.cancel()
      }
    } finally {
      this.#waiting--
    }
  }

  /** Runs `fn` holding the lock, and releases it however `fn` ends. */
  async withLock<T>(name: string, fn: (lock: Lock) => T | Promise<T>, options: WaitOptions = {}): Promise<T> {
    const lock = await this.acquire(name, options)
    try {
      return await fn(lock)
    } finally {
      await lock.release()
    }
  }

  stats(): LocksStats {
    return {
      held: this.#held.size,
      waiting: this.#waiting,
      acquired: this.#acquired,
      released: this.#released,
      lost: this.#lost,
      sweeps: this.#watch.sweeps,
    }
  }

  /** Releases every held lock, wakes every waiter (they reject with `CLOSED`), closes the session. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#untie()
    await Promise.allSettled([...this.#held].map((lock) => lock.release()))
    this.#watch.close()
    await this.#session.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  #prepare(): Promise<unknown> {
    this.#prepared ??= Promise.all([
      this.#watch.ready(),
      this.#options.migrate ? ensureLockTables(this.#options.herald.sql, this.#options.schema) : undefined,
    ]).catch((error: unknown) => {
      throw toConnectionError(error, 'preparing the locks failed')
    })
    this.#prepared.catch(() => {
      this.#prepared = undefined
    })
    return this.#prepared
  }

  async #try(name: string, key: bigint): Promise<Lock | undefined> {
    let token: bigint | undefined
    try {
      token = await this.#session.tryLock(key, name)
    } catch (error) {
      throw toConnectionError(error, `taking lock ${name} failed`)
    }
    if (token === undefined) return undefined
    if (this.#closed) {
      // close() ran meanwhile: it has already released what it knew about.
      await this.#session.unlock(key).catch(() => {})
      throw new HeraldError('CLOSED', 'these Locks are closed')
    }
    this.#acquired++
    const lock: Lock = new Lock(name, token, () => this.#release(lock, key))
    this.#held.add(lock)
    this.#slots.add(lock)
    return lock
  }

  async #release(lock: Lock, key: bigint): Promise<void> {
    // A lost lock was already dropped from #held: its session, and so its lock, is gone.
    const wasHeld = this.#held.delete(lock)
    try {
      if (!wasHeld) return
      // Unlock first and only then announce it, so a woken waiter finds the lock free: the
      // release message goes out on the lock session, queued behind the unlock.
      try {
        await this.#session.unlock(key, async (session) => {
          try {
            await this.#options.herald.publish(
              this.#options.channel,
              { k: key.toString() },
              { kind: RELEASE_KIND, tx: clientRunner(session) },
            )
          } catch (error) {
            // The lock is free; waiters elsewhere find it by their sweep.
            this.#emitError(toConnectionError(error, `announcing the release of ${lock.name} failed`))
          }
        })
      } catch (error) {
        // The session is given up, which frees the lock on the server; sweeps find it.
        this.#emitError(toConnectionError(error, `releasing ${lock.name} failed`))
        return
      }
      this.#released++
    } finally {
      this.#leaveSlot(lock)
    }
  }

  /** Frees the in-process slot of `lock` once, whether by release or by loss. */
  #leaveSlot(lock: Lock): void {
    if (this.#slots.delete(lock)) this.#local.leave(lock.name)
  }

  #loseAll(error: HeraldError): void {
    const lost = [...this.#held]
    this.#held.clear()
    for (const lock of lost) {
      this.#lost++
      lock.lose(error)
      // The server freed it, so local waiters may try now, as remote ones can.
      this.#leaveSlot(lock)
      safeEmit(this, 'lost', { name: lock.name, token: lock.token, error })
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new HeraldError('CLOSED', 'these Locks are closed')
    // Its releases could not be heard or sent: a lock taken now could wait forever.
    if (this.#options.herald.closed) throw new HeraldError('CLOSED', 'the Herald these Locks use is closed')
  }

  #emitError(error: HeraldError): void {
    safeEmit(this, 'error', error)
  }
}
