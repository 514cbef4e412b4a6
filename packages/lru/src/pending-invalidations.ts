import type { Clock as CoreClock } from '@herald/core'

/** The cache only reads the time. */
type Clock = Pick<CoreClock, 'now'>

interface Pending {
  /** The invalidating transaction's id, to ask the server whether it has ended; set once known. */
  txid: string | undefined
  readonly startedAt: number
  readonly keys: readonly string[]
  readonly tags: readonly string[]
  readonly all: boolean
  readonly expiresAt: number
}

/**
 * Invalidations published inside a transaction that has not committed yet. Until it does, the
 * database still holds the old values, so this instance must not cache what it loads for those
 * keys (or tags, or anything at all after an `invalidateAll`). Its own message arrives at
 * commit and releases them. A rolled-back transaction sends nothing, and a commit during a
 * listener gap is not heard, so the cache also asks the server (`pg_xact_status`) about
 * entries older than a second, and every entry expires after `timeoutMs` at the latest.
 */
export class PendingInvalidations {
  readonly #byId = new Map<string, Pending>()
  readonly #keys = new Map<string, number>()
  readonly #tags = new Map<string, number>()
  #all = 0
  #nextExpiry = Number.POSITIVE_INFINITY
  readonly #timeoutMs: number
  readonly #clock: Clock

  constructor(timeoutMs: number, clock: Clock) {
    this.#timeoutMs = timeoutMs
    this.#clock = clock
  }

  get size(): number {
    return this.#byId.size
  }

  add(
    id: string,
    change: {
      keys?: readonly string[] | undefined
      tags?: readonly string[] | undefined
      all?: boolean | undefined
    },
    txid?: string,
  ): void {
    const pending: Pending = {
      txid,
      startedAt: this.#clock.now(),
      keys: change.keys ?? [],
      tags: change.tags ?? [],
      all: change.all === true,
      expiresAt: this.#clock.now() + this.#timeoutMs,
    }
    this.#byId.set(id, pending)
    for (const key of pending.keys) this.#keys.set(key, (this.#keys.get(key) ?? 0) + 1)
    for (const tag of pending.tags) this.#tags.set(tag, (this.#tags.get(tag) ?? 0) + 1)
    if (pending.all) this.#all++
    this.#nextExpiry = Math.min(this.#nextExpiry, pending.expiresAt)
  }

  /** Lifts the block; returns what it covered (`undefined` if already lifted). */
  release(id: string): { keys: readonly string[]; tags: readonly string[]; all: boolean } | undefined {
    const pending = this.#byId.get(id)
    if (pending === undefined) return undefined
    this.#byId.delete(id)
    for (const key of pending.keys) decrement(this.#keys, key)
    for (const tag of pending.tags) decrement(this.#tags, tag)
    if (pending.all) this.#all--
    return pending
  }

  /** Records the transaction id of an entry added before it was known. */
  identify(id: string, txid: string): void {
    const pending = this.#byId.get(id)
    if (pending !== undefined) pending.txid = txid
  }

  /** Entries older than `ageMs` with a known transaction id: `[entry id, txid]`. */
  olderThan(ageMs: number): [string, string][] {
    const cutoff = this.#clock.now() - ageMs
    const found: [string, string][] = []
    for (const [id, pending] of this.#byId) {
      if (pending.startedAt <= cutoff && pending.txid !== undefined) found.push([id, pending.txid])
    }
    return found
  }

  /** Whether a value for `key` (carrying `tags`) must not be cached now. */
  blocks(key: string, tags: readonly string[]): boolean {
    if (this.#byId.size === 0) return false
    if (this.#clock.now() >= this.#nextExpiry) this.#expire()
    if (this.#all > 0 || this.#keys.has(key)) return true
    for (const tag of tags) if (this.#tags.has(tag)) return true
    return false
  }

  #expire(): void {
    const now = this.#clock.now()
    this.#nextExpiry = Number.POSITIVE_INFINITY
    for (const [id, pending] of this.#byId) {
      if (pending.expiresAt <= now) this.release(id)
      else this.#nextExpiry = Math.min(this.#nextExpiry, pending.expiresAt)
    }
  }
}

function decrement(counts: Map<string, number>, name: string): void {
  const count = (counts.get(name) ?? 0) - 1
  if (count <= 0) counts.delete(name)
  else counts.set(name, count)
}
