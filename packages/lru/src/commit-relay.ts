import { raceWait, systemClock } from '@herald/core'
import type { Sql } from 'postgres'
import { later } from './later.js'
import { transactionStatuses } from './transactions.js'

/** What one transactional invalidation evicts. */
export interface RelayedChange {
  readonly keys?: readonly string[] | undefined
  readonly tags?: readonly string[] | undefined
  readonly flush?: boolean | undefined
}

export interface RelayEntry {
  /** The entry in this cache's pending invalidations that blocks re-caching until commit. */
  readonly pendingId: string
  readonly txid: string
  readonly change: RelayedChange
}

export interface CommitRelayHooks {
  /** These transactions committed: evict here again and lift the local block. */
  committed(entries: readonly RelayEntry[]): void
  /** Tell every other instance of these commits (retried until it succeeds or the relay closes). */
  publish(entries: readonly RelayEntry[]): Promise<void>
  /** These rolled back: nothing to evict, only the local block to lift. */
  rolledBack(entries: readonly RelayEntry[]): void
  error(error: unknown, context: string): void
}

/**
 * The first re-check comes this soon after an invalidation: the writer's COMMIT is usually one
 * round trip away, so most are found committed at the first or second look.
 */
const FIRST_DELAY_MS = 1
/** A transaction held open (slow work after the invalidate) is looked at less and less often. */
const MAX_DELAY_MS = 50
/** After failures (the server unreachable, the Herald closed) the relay waits up to this long. */
const MAX_ERROR_DELAY_MS = 1_000
/** close() waits this long at most for its last look and messages. */
const CLOSE_TIMEOUT_MS = 5_000

/**
 * Delivers transactional invalidations after their commit from outside the writer's
 * transaction. A transaction that NOTIFYs takes a server-wide lock at commit, so writers that
 * NOTIFY commit one at a time; with the relay the writer only inserts its durable log row (the
 * guarantee: if it commits, the row exists and every instance's log poll finds it), and this
 * instance asks the server which of its writers' transactions have ended, one statement for all
 * of them, and sends one message for every commit it found — one NOTIFY, and one commit-lock
 * acquisition, shared by many writers.
 */
export class CommitRelay {
  readonly #sql: Sql<Record<string, unknown>>
  readonly #hooks: CommitRelayHooks
  readonly #entries = new Map<string, RelayEntry>()
  /** Committed, evicted here, but not yet announced (a publish failed): sent with the next batch. */
  #unsent: RelayEntry[] = []
  /** Messages on their way: close() waits for them. */
  readonly #sending = new Set<Promise<void>>()
  #delayMs = FIRST_DELAY_MS
  /** Cancels the next look, if one is scheduled; `#scheduledDelayMs` is its delay. */
  #cancelLook: (() => void) | undefined
  #scheduledDelayMs = Number.POSITIVE_INFINITY
  #polling: Promise<void> | undefined
  #closed = false
  #polls = 0

  constructor(sql: Sql<Record<string, unknown>>, hooks: CommitRelayHooks) {
    this.#sql = sql
    this.#hooks = hooks
  }

  /** Transactions waited for now. */
  get size(): number {
    return this.#entries.size
  }

  /** Status queries made so far. */
  get polls(): number {
    return this.#polls
  }

  add(entry: RelayEntry): void {
    this.#entries.set(entry.pendingId, entry)
    // A fresh invalidation is probably about to commit: look soon, whatever the back-off was.
    // A look already due that soon stays: pushing it back at every add would delay it for as
    // long as adds keep coming (with 32 writers, commit → relay p50 went from 8.6 to 5.3 ms).
    this.#delayMs = Math.min(this.#delayMs, FIRST_DELAY_MS)
    if (this.#polling === undefined && this.#scheduledDelayMs > this.#delayMs) this.#schedule()
  }

  /**
   * Stops polling after one last look, so a transaction that committed just before is still
   * relayed; any still open are left to the other instances' log polls.
   */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#cancel()
    const finishing = (async () => {
      await this.#polling
      if (this.#entries.size > 0) await this.#poll()
      this.#entries.clear()
      await Promise.all(this.#sending)
    })()
    // A half-open connection must not hold close() forever: the log rows remain for the peers.
    await raceWait(finishing, { timeoutMs: CLOSE_TIMEOUT_MS }, systemClock, 'closing the relay').catch(
      () => {},
    )
  }

  #schedule(): void {
    this.#cancel()
    if (this.#closed || (this.#entries.size === 0 && this.#unsent.length === 0)) return
    const look = (): void => {
      this.#cancelLook = undefined
      this.#scheduledDelayMs = Number.POSITIVE_INFINITY
      void this.#poll()
    }
    this.#scheduledDelayMs = this.#delayMs
    // Unref'd: a process that is done may exit; the log rows reach durable peers anyway.
    this.#cancelLook = later(look, this.#delayMs)
  }

  #cancel(): void {
    this.#cancelLook?.()
    this.#cancelLook = undefined
    this.#scheduledDelayMs = Number.POSITIVE_INFINITY
  }

  #poll(): Promise<void> {
    this.#polling ??= this.#pollOnce()
      // A hook that throws must not end the loop, nor reach the process as an unhandled rejection.
      .catch((error: unknown) =>
        this.#hooks.error(error, 'relaying committed invalidations failed; retrying'),
      )
      .finally(() => {
        this.#polling = undefined
        this.#schedule()
      })
    return this.#polling
  }

  async #pollOnce(): Promise<void> {
    const entries = [...this.#entries.values()]
    if (entries.length === 0) {
      this.#send([])
      return
    }
    this.#polls++
    let statuses
    try {
      statuses = await transactionStatuses(
        this.#sql,
        entries.map((entry) => entry.txid),
      )
    } catch (error) {
      this.#hooks.error(error, 'asking which transactions committed failed')
      this.#delayMs = Math.min(Math.max(this.#delayMs * 2, FIRST_DELAY_MS), MAX_ERROR_DELAY_MS)
      return
    }
    const committed: RelayEntry[] = []
    const rolledBack: RelayEntry[] = []
    entries.forEach((entry, index) => {
      const status = statuses[index]
      if (status === 'in progress') return
      this.#entries.delete(entry.pendingId)
      // Too old to know: evicting again is harmless, missing a commit is not.
      if (status === 'aborted') rolledBack.push(entry)
      else committed.push(entry)
    })
    if (rolledBack.length > 0) this.#safely(() => this.#hooks.rolledBack(rolledBack))
    // Something ended, so writers are busy and the next commits are a round trip away: look
    // again at once. Nothing ended: back off, up to MAX_DELAY_MS for a transaction held open.
    this.#delayMs =
      committed.length + rolledBack.length > 0
        ? 0
        : Math.min(Math.max(this.#delayMs * 2, FIRST_DELAY_MS), MAX_DELAY_MS)
    // Evicting here failing must not keep the others from hearing of the commit.
    if (committed.length > 0) this.#safely(() => this.#hooks.committed(committed))
    this.#send(committed)
  }

  #safely(hook: () => void): void {
    try {
      hook()
    } catch (error) {
      this.#hooks.error(error, 'applying relayed commits here failed')
    }
  }

  /**
   * Announces `committed` and whatever an earlier failure left unsent. Not awaited by the
   * looks: the next need not wait for this message (Herald coalesces them). A failure keeps
   * them for the next look, which comes after a back-off.
   */
  #send(committed: readonly RelayEntry[]): void {
    const batch = this.#unsent.length === 0 ? committed : [...this.#unsent, ...committed]
    this.#unsent = []
    if (batch.length === 0) return
    const sending = this.#hooks
      .publish(batch)
      .catch((error: unknown) => {
        this.#hooks.error(error, 'relaying committed invalidations failed; retrying')
        if (this.#closed) return
        this.#unsent.push(...batch)
        this.#delayMs = Math.min(Math.max(this.#delayMs * 2, FIRST_DELAY_MS * 10), MAX_ERROR_DELAY_MS)
        if (this.#polling === undefined) this.#schedule()
      })
      .finally(() => this.#sending.delete(sending))
    this.#sending.add(sending)
  }
}
