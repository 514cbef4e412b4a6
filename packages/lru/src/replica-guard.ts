import type { Sql } from 'postgres'
import type { Clock as CoreClock } from '@herald/core'

/** The cache only reads the time. */
type Clock = Pick<CoreClock, 'now'>

/** A postgres.js client a loader reads with: the replica, or the primary. */
export type LoadDb = Sql<Record<string, unknown>>

/** Reads from a hot standby; see {@link ReplicaGuard}. */
export interface ReplicaOptions {
  /** postgres.js client of the read replica: `getOrLoad` hands it to the loader. */
  sql: LoadDb
  /**
   * Client of the primary: the WAL position of each invalidation is read from it, and a
   * `fallback: 'primary'` load reads from it.
   * @default herald.sql
   */
  primary?: LoadDb
  /**
   * How long a load that follows an invalidation waits for the replica to replay past it before
   * it falls back, in ms.
   * @default 1000
   */
  maxWaitMs?: number
  /**
   * Pause between two reads of the replica's replay position while waiting, in ms.
   * @default 10
   */
  pollMs?: number
  /**
   * When the replica has not caught up after `maxWaitMs` (or its position cannot be read):
   * `'primary'` loads from `primary` and caches the result; `'no-cache'` loads from the replica
   * and returns the result without caching it.
   * @default 'primary'
   */
  fallback?: 'primary' | 'no-cache'
}

export interface ResolvedReplicaOptions {
  readonly sql: LoadDb
  readonly primary: LoadDb | undefined
  readonly maxWaitMs: number
  readonly pollMs: number
  readonly fallback: 'primary' | 'no-cache'
}

/** Where one load reads, and whether its result may be cached. */
export interface LoadRoute {
  readonly db: LoadDb
  readonly cacheable: boolean
}

/** A WAL position a load must wait for; `undefined` once reading it failed (then: fall back). */
interface Fence {
  readonly lsn: Promise<bigint | undefined>
  resolved: bigint | undefined
}

const MAX_LSN = 0xffff_ffff_ffff_ffffn

/** Past this many keys with a fence of their own, they collapse into one fence for every key. */
const MAX_KEY_FENCES = 10_000

/**
 * Keeps an invalidation from being undone by a lagging read replica: without it, an instance
 * evicts a key, reloads it from a replica that has not replayed the write yet, and caches the
 * old row again.
 *
 * Each invalidation this instance applies (received, its own, a durable replay, a flush after
 * a gap) fences its keys (tags and flushes: every key) at a WAL position of the primary, and a
 * load of a fenced key waits until the replica's `pg_last_wal_replay_lsn()` reaches it.
 *
 * The position is read on the receiving side, from the primary, when the invalidation is
 * applied, not carried in the message by the writer: a position the writer reads inside its
 * transaction precedes that transaction's commit record, so a replica at that position may
 * still show the old row. NOTIFY is delivered only after commit, so any position read after
 * the message arrived is past the commit; this also covers triggers and raw SQL NOTIFYs,
 * which carry no position, and costs one query per batch of messages arriving in one tick,
 * on the receiver only. It is `pg_current_wal_insert_lsn()`, not `pg_current_wal_lsn()`: with
 * `synchronous_commit = off` a commit is visible (and notified) before its record is written,
 * so the write position can still precede it.
 */
export class ReplicaGuard {
  readonly #options: ResolvedReplicaOptions
  readonly #primary: LoadDb
  readonly #clock: Clock
  readonly #onError: (error: unknown, context: string) => void
  readonly #keyFences = new Map<string, Fence>()
  #allFence: Fence | undefined
  #nextSample: Promise<bigint | undefined> | undefined
  #replayQuery: Promise<bigint> | undefined
  /** The highest replay position seen: a fence at or below it needs no query. */
  #replayed = -1n
  waits = 0
  fallbacks = 0

  constructor(
    options: ResolvedReplicaOptions,
    primary: LoadDb,
    clock: Clock,
    onError: (error: unknown, context: string) => void,
  ) {
    this.#options = options
    this.#primary = options.primary ?? primary
    this.#clock = clock
    this.#onError = onError
  }

  /** Called once the invalidation of `key` is committed (on arrival, or on its own plain call). */
  fenceKey(key: string): void {
    // A newer sample replaces an older one: it is read later, so it is not lower.
    this.#keyFences.set(key, this.#fence())
    if (this.#keyFences.size > MAX_KEY_FENCES) this.fenceAll()
  }

  /** A tag invalidation or a flush: every key waits. */
  fenceAll(): void {
    this.#allFence = this.#fence()
    // The new fence is later than every key's: they are redundant.
    this.#keyFences.clear()
  }

  /** Where the load of `key` reads: the replica once it has replayed its fences, else the fallback. */
  async route(key: string): Promise<LoadRoute> {
    const fences = [this.#keyFences.get(key), this.#allFence].filter((fence) => fence !== undefined)
    const replica: LoadRoute = { db: this.#options.sql, cacheable: true }
    if (fences.length === 0) return replica
    let target = 0n
    for (const fence of fences) {
      const lsn = (await fence.lsn) ?? (await this.#resample(key, fence))
      if (lsn === undefined) return this.#fallback()
      if (lsn > target) target = lsn
    }
    if (target <= this.#replayed) {
      this.#prune(key)
      return replica
    }
    this.waits++
    const deadline = this.#clock.now() + this.#options.maxWaitMs
    for (;;) {
      try {
        if ((await this.#replayPosition()) >= target) {
          this.#prune(key)
          return replica
        }
      } catch (error) {
        this.#onError(error, 'reading the replica’s replay position failed')
        return this.#fallback()
      }
      const remaining = deadline - this.#clock.now()
      if (remaining <= 0) return this.#fallback()
      await new Promise((resolve) => setTimeout(resolve, Math.min(this.#options.pollMs, remaining)).unref())
    }
  }

  /**
   * A fence whose position could not be read (the primary was unreachable) is read again: any
   * position read now is still after the commit it stands for, so it is a valid fence, and a
   * failed one must not send every later load to the fallback.
   */
  async #resample(key: string, failed: Fence): Promise<bigint | undefined> {
    const fresh = this.#fence()
    if (this.#keyFences.get(key) === failed) this.#keyFences.set(key, fresh)
    if (this.#allFence === failed) this.#allFence = fresh
    return fresh.lsn
  }

  #fallback(): LoadRoute {
    this.fallbacks++
    return this.#options.fallback === 'primary'
      ? { db: this.#primary, cacheable: true }
      : { db: this.#options.sql, cacheable: false }
  }

  #fence(): Fence {
    const fence: Fence = { lsn: this.#sample(), resolved: undefined }
    void fence.lsn.then((lsn) => (fence.resolved = lsn))
    return fence
  }

  /**
   * One query for every fence set in this tick. Not one already sent: it may have been read
   * before the commit whose message is being applied now.
   */
  #sample(): Promise<bigint | undefined> {
    this.#nextSample ??= Promise.resolve().then(async () => {
      this.#nextSample = undefined
      try {
        const [row] = await this.#primary<{ lsn: string }[]>`select pg_current_wal_insert_lsn()::text as lsn`
        return row === undefined ? undefined : parseLsn(row.lsn)
      } catch (error) {
        this.#onError(error, 'reading the primary’s WAL position failed; loads fall back')
        return undefined
      }
    })
    return this.#nextSample
  }

  /**
   * The replica's replay position; concurrent loads share a query in flight (an earlier reading
   * is only lower, so sharing it can make a load wait longer, never read too early).
   */
  #replayPosition(): Promise<bigint> {
    this.#replayQuery ??= (async () => {
      try {
        const [row] = await this.#options.sql<{ lsn: string | null; recovery: boolean }[]>`
          select pg_last_wal_replay_lsn()::text as lsn, pg_is_in_recovery() as recovery`
        // Not in recovery: a primary (or a promoted replica) is never behind itself.
        if (row === undefined || !row.recovery) return MAX_LSN
        const position = parseLsn(row.lsn ?? '0/0')
        if (position > this.#replayed) this.#replayed = position
        return position
      } finally {
        this.#replayQuery = undefined
      }
    })()
    return this.#replayQuery
  }

  /**
   * Drops the fences of `key` and of every key that the replica has replayed past. Fences of keys
   * never loaded again stay until MAX_KEY_FENCES collapses them into one.
   */
  #prune(key: string): void {
    const replayed = this.#replayed
    const own = this.#keyFences.get(key)
    if (own?.resolved !== undefined && own.resolved <= replayed) this.#keyFences.delete(key)
    const all = this.#allFence
    if (all?.resolved !== undefined && all.resolved <= replayed) this.#allFence = undefined
  }
}

/** `'16/B374D848'` → its 64-bit position. */
export function parseLsn(text: string): bigint {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text)
  if (match === null) throw new Error(`not a WAL position: ${text}`)
  return (BigInt(`0x${match[1] ?? '0'}`) << 32n) | BigInt(`0x${match[2] ?? '0'}`)
}
