import { HeraldError, type Herald, type MessageMeta, type Subscription } from '@herald/core'

/** The envelope kind of a release message. */
export const RELEASE_KIND = 'release'

interface Waiter {
  readonly wake: () => void
  /**
   * The backend that held the lock when this waiter looked, if it waits for that holder to let
   * go (waitForRelease) rather than for the lock to be free (acquire): a sweep that finds
   * another holder already, because the lock was freed and taken again in between, wakes it.
   */
  heldBy: number | undefined
}

export interface ReleaseWatchOptions {
  readonly herald: Herald
  readonly channel: string
  readonly sweepMs: number
  readonly onError: (error: HeraldError) => void
}

/**
 * Wakes whoever waits for a lock key to be released. Three things wake them: a release
 * message (sent after the unlock), a sweep that finds the key free although nobody said so (a
 * holder that crashed or lost its connection sends no NOTIFY), and a reconnect of the listener
 * (messages in the gap were lost). Every waiter in the process shares the one subscription and
 * the one sweep query per interval.
 */
export class ReleaseWatch {
  readonly #options: ReleaseWatchOptions
  readonly #waiters = new Map<string, Set<Waiter>>()
  #subscription: Promise<Subscription> | undefined
  #sweepTimer: ReturnType<typeof setTimeout> | undefined
  #sweeping = false
  #closed = false
  #sweeps = 0

  constructor(options: ReleaseWatchOptions) {
    this.#options = options
    options.herald.on('reconnected', this.#onReconnected)
  }

  get sweeps(): number {
    return this.#sweeps
  }

  /** Subscribes (once); a waiter must be registered after this and before checking the lock. */
  ready(): Promise<unknown> {
    this.#subscription ??= this.#options.herald.subscribe(this.#options.channel, (body, meta) =>
      this.#receive(body, meta),
    )
    this.#subscription.catch(() => {
      this.#subscription = undefined
    })
    return this.#subscription
  }

  /** Registers a one-shot waiter for `key`; `cancel` removes it, `heldBy` narrows what wakes it. */
  wait(key: bigint): {
    readonly woken: Promise<void>
    readonly cancel: () => void
    readonly heldBy: (pid: number) => void
  } {
    const id = key.toString()
    let waiter!: Waiter
    const woken = new Promise<void>((resolve) => {
      waiter = { wake: resolve, heldBy: undefined }
    })
    let set = this.#waiters.get(id)
    if (set === undefined) {
      set = new Set()
      this.#waiters.set(id, set)
    }
    set.add(waiter)
    this.#scheduleSweep()
    const cancel = (): void => {
      const current = this.#waiters.get(id)
      current?.delete(waiter)
      if (current?.size === 0) this.#waiters.delete(id)
    }
    return {
      woken,
      cancel,
      heldBy: (pid) => {
        waiter.heldBy = pid
      },
    }
  }

  /** The backend holding each of `keys` right now (absent: free). */
  async holders(keys: readonly bigint[]): Promise<Map<string, number>> {
    if (keys.length === 0) return new Map()
    const rows = await this.#options.herald.sql<{ k: string; pid: number | null }[]>`
      select k, (
        select l.pid from pg_locks l
        where l.locktype = 'advisory' and l.objsubid = 1 and l.granted
          and l.database = (select oid from pg_database where datname = current_database())
          and ((l.classid::bigint << 32) | l.objid::bigint) = k::bigint
        limit 1
      ) as pid
      from json_array_elements_text(${JSON.stringify(keys.map(String))}::text::json) as k`
    const held = new Map<string, number>()
    for (const row of rows) if (row.pid !== null) held.set(row.k, row.pid)
    return held
  }

  close(): void {
    this.#closed = true
    this.#options.herald.off('reconnected', this.#onReconnected)
    if (this.#sweepTimer !== undefined) clearTimeout(this.#sweepTimer)
    this.#sweepTimer = undefined
    for (const set of this.#waiters.values()) for (const waiter of set) waiter.wake()
    this.#waiters.clear()
    // A subscribe still waiting for the listener must not hold close() up: drop it when it lands.
    void this.#subscription?.then((subscription) => subscription.unsubscribe()).catch(() => {})
  }

  #wakeAll(id: string): void {
    const set = this.#waiters.get(id)
    if (set === undefined) return
    this.#waiters.delete(id)
    for (const waiter of set) waiter.wake()
  }

  /** Wakes the waiters of `id` whose holder has been replaced by `pid`. */
  #wakeReplaced(id: string, pid: number): void {
    const set = this.#waiters.get(id)
    if (set === undefined) return
    for (const waiter of set) {
      if (waiter.heldBy === undefined || waiter.heldBy === pid) continue
      set.delete(waiter)
      waiter.wake()
    }
    if (set.size === 0) this.#waiters.delete(id)
  }

  #receive(body: unknown, meta: MessageMeta): void {
    if (meta.kind !== RELEASE_KIND) return
    const key = typeof body === 'object' && body !== null ? (body as { k?: unknown }).k : undefined
    if (typeof key !== 'string' || !/^-?\d{1,20}$/.test(key)) {
      this.#options.onError(
        new HeraldError('PAYLOAD_INVALID', 'lock release message has no key "k"; ignored'),
      )
      return
    }
    // A forged release costs a wasted attempt, never a lock held twice: waiters re-check.
    this.#wakeAll(key)
  }

  readonly #onReconnected = (): void => {
    void this.#sweep()
  }

  #scheduleSweep(): void {
    if (this.#sweepTimer !== undefined || this.#closed) return
    this.#sweepTimer = setTimeout(() => {
      this.#sweepTimer = undefined
      void this.#sweep().finally(() => {
        if (this.#waiters.size > 0) this.#scheduleSweep()
      })
    }, this.#options.sweepMs)
    this.#sweepTimer.unref()
  }

  /** One query for every awaited key: wake those that are free. */
  async #sweep(): Promise<void> {
    if (this.#sweeping || this.#waiters.size === 0) return
    this.#sweeping = true
    this.#sweeps++
    try {
      const ids = [...this.#waiters.keys()]
      const held = await this.holders(ids.map((id) => BigInt(id)))
      if (this.#closed) return
      for (const id of ids) {
        const pid = held.get(id)
        if (pid === undefined) this.#wakeAll(id)
        else this.#wakeReplaced(id, pid)
      }
    } catch (error) {
      this.#options.onError(
        error instanceof HeraldError
          ? error
          : new HeraldError('CONNECTION_FAILED', `lock sweep failed: ${String(error)}`, { cause: error }),
      )
    } finally {
      this.#sweeping = false
    }
  }
}
