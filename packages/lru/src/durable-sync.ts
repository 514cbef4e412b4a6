import type { TransactionRunner } from '@herald/core'
import type { Clock as CoreClock } from '@herald/core'

/** The cache only reads the time. */
type Clock = Pick<CoreClock, 'now'>
import type { DurableLog, LogPosition, LogRow } from './durable-log.js'
import type { LogRef } from './invalidation-message.js'
import type { ResolvedDurableOptions } from './options.js'

export interface DurableSyncHooks {
  /** Applies a log row that no NOTIFY brought. */
  apply(row: LogRow): void
  /** Empties the cache: after a gap the log could not cover. */
  flush(): void
  /** A replay after a gap finished (the cache may go live). */
  replayed(rows: number, durationMs: number): void
  error(error: unknown, context: string): void
}

/**
 * Keeps one cache in step with its durable log: where it has read up to, which rows it has
 * already applied (from a NOTIFY or an earlier read), a timer that reads the log as a
 * backstop for a lost NOTIFY, the replay after a gap, and an occasional prune.
 */
export class DurableSync {
  readonly #log: DurableLog
  readonly #options: ResolvedDurableOptions
  readonly #hooks: DurableSyncHooks
  readonly #clock: Clock
  #position: LogPosition | undefined
  /**
   * Rows a read applied past the position, so the next read does not evict them twice. Only
   * reads count: a NOTIFY claiming a row could be forged, and must not make a read skip it.
   */
  readonly #applied = new Map<string, bigint>()
  #timer: ReturnType<typeof setTimeout> | undefined
  #reading: Promise<void> | undefined
  #lastPruneAt = 0
  #closed = false
  #appliedRows = 0

  constructor(log: DurableLog, options: ResolvedDurableOptions, clock: Clock, hooks: DurableSyncHooks) {
    this.#log = log
    this.#options = options
    this.#clock = clock
    this.#hooks = hooks
  }

  /** Log rows applied by reads (each one a NOTIFY that never came, or came during a gap). */
  get appliedRows(): number {
    return this.#appliedRows
  }

  prepare(): Promise<void> {
    return this.#log.prepare()
  }

  /**
   * Starts from the end of the log. Call once LISTEN is live: every row committed from then on
   * also arrives as a NOTIFY, and an empty cache needs nothing from before.
   */
  async start(): Promise<void> {
    this.#position = await this.#log.position()
    this.#schedule()
  }

  append(
    change: {
      keys?: readonly string[] | undefined
      tags?: readonly string[] | undefined
      flush?: boolean | undefined
    },
    tx: TransactionRunner | undefined,
  ): Promise<LogRef> {
    return this.#log.append(change, tx)
  }

  /** After a gap: read what was missed instead of flushing. Resolves when it has been applied. */
  replay(): Promise<void> {
    return this.#read(true)
  }

  close(): Promise<void> {
    this.#closed = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    return this.#reading?.catch(() => {}) ?? Promise.resolve()
  }

  #schedule(): void {
    if (this.#closed) return
    this.#timer = setTimeout(() => void this.#read(false), this.#options.pollMs)
    this.#timer.unref()
  }

  #read(afterGap: boolean): Promise<void> {
    if (this.#reading !== undefined) {
      // A gap while a timer read runs: replay right after it, from the position it reaches.
      return this.#reading.then(() => (afterGap ? this.#read(true) : undefined))
    }
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    const started = this.#clock.now()
    this.#reading = this.#readOnce()
      .then(
        (rows) => {
          if (afterGap) this.#hooks.replayed(rows, this.#clock.now() - started)
        },
        (error: unknown) => {
          this.#hooks.error(error, 'reading the durable invalidation log failed')
          // Without the log nothing vouches for the cache after a gap.
          if (afterGap) {
            this.#hooks.flush()
            this.#hooks.replayed(0, this.#clock.now() - started)
          }
        },
      )
      .finally(() => {
        this.#reading = undefined
        this.#prune()
        this.#schedule()
      })
    return this.#reading
  }

  async #readOnce(): Promise<number> {
    const position = this.#position ?? (await this.#log.position())
    const result = await this.#log.read(position)
    this.#position = result.position
    if (result.status === 'gone') {
      this.#hooks.flush()
      this.#applied.clear()
      return 0
    }
    let applied = 0
    for (const row of result.rows) {
      if (this.#applied.has(row.ref.id)) continue
      this.#applied.set(row.ref.id, BigInt(row.ref.tx))
      this.#hooks.apply(row)
      applied++
    }
    this.#appliedRows += applied
    // A row at or below the new maxId from a transaction older than the new xmin can never be
    // read again, so there is no need to remember having applied it.
    for (const [id, tx] of this.#applied) {
      if (BigInt(id) <= result.position.maxId && tx < result.position.xmin) this.#applied.delete(id)
    }
    return applied
  }

  #prune(): void {
    const { retentionMs } = this.#options
    const now = this.#clock.now()
    // Every instance prunes now and then; deleting the same old rows twice is harmless.
    if (this.#closed || now - this.#lastPruneAt < Math.min(retentionMs / 10, 600_000)) return
    this.#lastPruneAt = now
    this.#log.prune(retentionMs).catch((error: unknown) => this.#hooks.error(error, 'pruning the log failed'))
  }
}
