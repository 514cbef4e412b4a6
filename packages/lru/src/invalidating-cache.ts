import { randomBytes } from 'node:crypto'
import {
  deferred,
  HeraldError,
  toConnectionError,
  safeEmit,
  type Herald,
  type MessageMeta,
  type Subscription,
  type Deferred,
  type TransactionClient,
  type TransactionRunner,
  toTransactionRunner,
} from '@herald/core'
import type { Sql } from 'postgres'
import { EventEmitter } from 'eventemitter3'
import { LRUCache } from 'lru-cache'
import { CommitRelay, type RelayEntry, type RelayedChange } from './commit-relay.js'
import { DurableLog } from './durable-log.js'
import { DurableSync } from './durable-sync.js'
import type { CacheEvents, EvictReason } from './events.js'
import {
  decodeInvalidation,
  encodeInvalidation,
  INVALIDATION_KIND,
  type InvalidationMessage,
  type LogRef,
} from './invalidation-message.js'
import { resolveCacheOptions, type InvalidatingCacheOptions, type ResolvedCacheOptions } from './options.js'
import { PendingInvalidations } from './pending-invalidations.js'
import { ReplicaGuard, type LoadDb } from './replica-guard.js'
import { TagIndex } from './tag-index.js'
import { transactionId, transactionStatuses } from './transactions.js'

export interface SetOptions {
  /** Tags for `invalidateTags`. */
  tags?: readonly string[]
  /** This entry's time to live, in ms, instead of the cache's `ttl`. */
  ttl?: number
}

export interface InvalidateOptions {
  /** The app's open transaction, from any driver or ORM ({@link TransactionClient}): other instances evict when, and only if, it commits. */
  tx?: TransactionClient
}

export interface CacheStats {
  /** `get`/`getOrLoad` calls answered from the cache. */
  readonly hits: number
  /** Calls that found nothing (bypassed calls included). */
  readonly misses: number
  /** Calls that skipped the cache because the listener was down (`onDisconnect: 'bypass'`). */
  readonly bypassed: number
  /** Loader calls made. */
  readonly loads: number
  /** `getOrLoad` calls that joined a load already running for their key. */
  readonly coalesced: number
  /** Loads whose result was returned but not cached: an invalidation overlapped them. */
  readonly staleLoadsDiscarded: number
  /** Loader calls that threw or rejected. */
  readonly loadErrors: number
  /** Invalidation messages sent by this instance. */
  readonly invalidationsSent: number
  /** Invalidation messages for this cache received from other instances (and own commits). */
  readonly invalidationsReceived: number
  /** Whole-cache flushes (after gaps, or flush messages). */
  readonly flushes: number
  /**
   * Durable log rows applied by replays and polls. A poll re-applies rows whose NOTIFY already
   * came (a NOTIFY's log reference is not trusted to skip them), so this counts both.
   */
  readonly replayedRows: number
  /** Transactional invalidations of this instance whose commit it has not seen yet. */
  readonly pendingInvalidations: number
  /** Loads (with `replica`) that waited for the replica to replay an invalidation. */
  readonly replicaWaits: number
  /** Loads (with `replica`) that fell back: the replica had not caught up within `maxWaitMs`. */
  readonly replicaFallbacks: number
  /** Entries cached now. */
  readonly size: number
  /** Entries cached now with tags (each is in the tag index). */
  readonly taggedKeys: number
  /** Subscribed and connected: the cache may store. */
  readonly live: boolean
}

interface Load<TValue> {
  readonly tags: readonly string[]
  stale: boolean
  promise: Promise<TValue>
}

const NO_TAGS: readonly string[] = []

/** A transactional invalidation older than this is checked with the server (a commit may have gone unheard). */
const PENDING_CHECK_MS = 1_000

/**
 * An lru-cache whose keys are evicted on every instance. It never keeps a stale entry: a
 * load that overlaps an invalidation of its key is returned but not cached, a transactional
 * invalidation keeps this instance from re-caching the old value until commit, and a gap in
 * the listener connection empties the cache (or, durable, replays what was missed).
 */
export class InvalidatingCache<TValue extends {}>
  extends EventEmitter<CacheEvents>
  implements AsyncDisposable
{
  readonly name: string
  readonly #options: ResolvedCacheOptions<TValue>
  /** Unties this from its Herald's close(), once closed by itself. */
  readonly #untie: () => void
  readonly #lru: LRUCache<string, TValue, unknown>
  readonly #tags = new TagIndex()
  readonly #loads = new Map<string, Load<TValue>>()
  readonly #pending: PendingInvalidations
  readonly #durable: DurableSync | undefined
  /** With `durable.relay`: delivers transactional invalidations after their commit. */
  readonly #relay: CommitRelay | undefined
  /** herald.sql, resolved at the first query: for loaders without `replica`, the log and the relay. */
  readonly #primarySql: LoadDb
  readonly #replica: ReplicaGuard | undefined
  readonly #bypass: boolean
  readonly #ready: Promise<void>
  #subscription: Subscription | undefined
  #live = false
  readonly #closing = new AbortController()
  /** This cache's id in its messages: another cache of the same name on this Herald is not "self". */
  readonly #instance = randomBytes(6).toString('base64url')
  /** Bumped by every gap, so only the newest replay may make the cache live again. */
  #generation = 0
  #closed = false
  /** Why the entries being disposed now leave; anything lru-cache disposes on its own is lru/ttl/set. */
  #evicting: EvictReason | undefined
  #pendingTimer: ReturnType<typeof setTimeout> | undefined
  #keyBatch: { readonly keys: Set<string>; readonly done: Deferred<void> } | undefined
  #hits = 0
  #misses = 0
  #bypassed = 0
  #loadCount = 0
  #coalesced = 0
  #staleLoadsDiscarded = 0
  #loadErrors = 0
  #invalidationsSent = 0
  #invalidationsReceived = 0
  #flushes = 0

  constructor(options: InvalidatingCacheOptions<TValue>) {
    super()
    this.#options = resolveCacheOptions(options)
    this.#untie = this.#options.herald.closeWith(this)
    this.name = this.#options.name
    this.#bypass = this.#options.onDisconnect === 'bypass'
    this.#pending = new PendingInvalidations(this.#options.pendingTimeoutMs, this.#options.clock)
    this.#lru = new LRUCache<string, TValue, unknown>({
      ...this.#options.lru,
      dispose: (_value, key, reason) => this.#disposed(key, reason),
    } as LRUCache.Options<string, TValue, unknown>)
    const { durable, clock, replica } = this.#options
    this.#primarySql = lazySql(this.#options.herald)
    this.#replica =
      replica &&
      new ReplicaGuard(replica, this.#primarySql, clock, (error, context) => this.#emitError(error, context))
    if (durable !== undefined) {
      const log = new DurableLog(durable.sql ?? this.#primarySql, this.name, {
        schema: durable.schema,
        migrate: durable.migrate,
        maxReplayRows: durable.maxReplayRows,
      })
      this.#durable = new DurableSync(log, durable, clock, {
        apply: (row) => this.#apply(row),
        flush: () => this.#flush('gap'),
        replayed: (rows, durationMs) => safeEmit(this, 'replay', { rows, durationMs }),
        error: (error, context) => this.#emitError(error, context),
      })
    }
    this.#relay =
      durable?.relay === true
        ? new CommitRelay(this.#primarySql, {
            committed: (entries) => {
              for (const entry of entries) {
                this.#apply(entry.change)
                this.#pending.release(entry.pendingId)
              }
            },
            publish: (entries) => this.#relayCommitted(entries),
            rolledBack: (entries) => {
              for (const entry of entries) this.#pending.release(entry.pendingId)
            },
            error: (error, context) => this.#emitError(error, context),
          })
        : undefined
    this.#options.herald.on('disconnected', this.#onDisconnected)
    this.#options.herald.on('reconnected', this.#onReconnected)
    this.#ready = this.#attach()
    // ready() is how callers learn of a failure; an unobserved one is still emitted.
    this.#ready.catch((error: unknown) => this.#emitError(error, 'the cache could not subscribe'))
  }

  /** Resolves once the subscription is live; until then the cache stores nothing (loads still work). */
  ready(): Promise<void> {
    return this.#ready
  }

  /** The cached value, or `undefined`. Synchronous. */
  get(key: string): TValue | undefined {
    if (typeof key !== 'string' || key === '') throw invalidKey(key)
    if (!this.#live && this.#bypass) {
      this.#bypassed++
      this.#misses++
      return undefined
    }
    const value = this.#lru.get(key)
    if (value === undefined) this.#misses++
    else this.#hits++
    return value
  }

  has(key: string): boolean {
    if (typeof key !== 'string' || key === '') throw invalidKey(key)
    return (this.#live || !this.#bypass) && this.#lru.has(key)
  }

  /**
   * Caches a value on this instance only (the database is the source every instance loads
   * from). Returns false, storing nothing, while not live, while a transactional
   * invalidation of the key is uncommitted, or when lru-cache refuses the entry (over
   * `maxEntrySize`; a value it replaced is gone either way).
   */
  set(key: string, value: TValue, options: SetOptions = {}): boolean {
    assertKey(key)
    const tags = checkTags(options.tags)
    if (!this.#storable(key, tags)) return false
    // A load of this key still running read the row earlier than this value: it must not win.
    const load = this.#loads.get(key)
    if (load !== undefined) {
      load.stale = true
      this.#loads.delete(key)
    }
    return this.#store(key, value, tags, options.ttl)
  }

  /**
   * The cached value, or the loader's: concurrent calls for one key share one load. A load
   * that an invalidation (of its key, one of its tags, or everything) overlapped is returned
   * to its callers but not cached, and later callers start a fresh one. The loader gets the
   * client to read with: `replica.sql` (or, on fallback, the primary) with the `replica`
   * option, else herald.sql.
   */
  async getOrLoad(
    key: string,
    loader: (db: LoadDb) => TValue | Promise<TValue>,
    options: SetOptions = {},
  ): Promise<TValue> {
    if (typeof loader !== 'function') throw new HeraldError('INVALID_OPTION', 'loader must be a function')
    const hit = this.get(key)
    if (hit !== undefined) return hit
    const running = this.#loads.get(key)
    if (running !== undefined) {
      this.#coalesced++
      return running.promise
    }
    const tags = checkTags(options.tags)
    const load: Load<TValue> = { tags, stale: false, promise: undefined as unknown as Promise<TValue> }
    this.#loads.set(key, load)
    load.promise = this.#runLoad(key, load, loader, options.ttl)
    return load.promise
  }

  async #runLoad(
    key: string,
    load: Load<TValue>,
    loader: (db: LoadDb) => TValue | Promise<TValue>,
    ttl?: number,
  ): Promise<TValue> {
    this.#loadCount++
    try {
      // With a replica, wait until it has replayed the invalidations this key follows.
      const route = this.#replica ? await this.#replica.route(key) : { db: this.#primarySql, cacheable: true }
      const value = await loader(route.db)
      if (load.stale) this.#staleLoadsDiscarded++
      else if (route.cacheable && value !== undefined && value !== null && this.#storable(key, load.tags)) {
        this.#store(key, value, load.tags, ttl)
      }
      return value
    } catch (error) {
      this.#loadErrors++
      throw error
    } finally {
      if (this.#loads.get(key) === load) this.#loads.delete(key)
    }
  }

  /** Evicts keys here and on every other instance (with `{ tx }`: there, on commit). */
  async invalidate(keys: string | readonly string[], options: InvalidateOptions = {}): Promise<void> {
    const list = keyList(keys)
    this.#assertOpen()
    if (list.length === 0) return
    if (list.length > this.#options.flushAboveKeys) return this.invalidateAll(options)
    const tx = transactionOf(options, 'invalidate')
    for (const key of list) this.#evictKey(key, 'invalidate')
    if (tx !== undefined) return this.#broadcast({ keys: list }, tx)
    return this.#batchKeys(list)
  }

  /**
   * Plain invalidations of one tick travel as one message (and, durable, one log row): a
   * thousand `invalidate(key)` calls cost one publish, not a thousand. Their callers share its
   * outcome.
   */
  #batchKeys(keys: readonly string[]): Promise<void> {
    let batch = this.#keyBatch
    if (batch === undefined) {
      const created = { keys: new Set<string>(), done: deferred<void>() }
      this.#keyBatch = batch = created
      queueMicrotask(() => {
        this.#keyBatch = undefined
        const all = [...created.keys]
        const sent =
          all.length > this.#options.flushAboveKeys
            ? this.#broadcast({ flush: true }, undefined)
            : this.#broadcast({ keys: all }, undefined)
        sent.then(
          () => created.done.resolve(),
          (error: unknown) => created.done.reject(error),
        )
      })
    }
    for (const key of keys) batch.keys.add(key)
    return batch.done.promise
  }

  /** Evicts every key set with one of `tags`, here and on every other instance. */
  async invalidateTags(tags: string | readonly string[], options: InvalidateOptions = {}): Promise<void> {
    const list = keyList(tags)
    this.#assertOpen()
    if (list.length === 0) return
    const tx = transactionOf(options, 'invalidateTags')
    this.#evictTags(list)
    await this.#broadcast({ tags: list }, tx)
  }

  /** Empties this cache on every instance. */
  async invalidateAll(options: InvalidateOptions = {}): Promise<void> {
    this.#assertOpen()
    const tx = transactionOf(options, 'invalidateAll')
    this.#flush('flush')
    await this.#broadcast({ flush: true }, tx)
  }

  /** Removes a key from this instance only. */
  delete(key: string): boolean {
    assertKey(key)
    return this.#remove(key, 'delete')
  }

  /** Empties this instance only. */
  clear(): void {
    this.#markLoadsStale()
    this.#evicting = 'delete'
    try {
      this.#lru.clear()
    } finally {
      this.#evicting = undefined
    }
  }

  get size(): number {
    return this.#lru.size
  }

  stats(): CacheStats {
    return {
      hits: this.#hits,
      misses: this.#misses,
      bypassed: this.#bypassed,
      loads: this.#loadCount,
      coalesced: this.#coalesced,
      staleLoadsDiscarded: this.#staleLoadsDiscarded,
      loadErrors: this.#loadErrors,
      invalidationsSent: this.#invalidationsSent,
      invalidationsReceived: this.#invalidationsReceived,
      flushes: this.#flushes,
      replayedRows: this.#durable?.appliedRows ?? 0,
      pendingInvalidations: this.#pending.size,
      taggedKeys: this.#tags.size,
      replicaWaits: this.#replica?.waits ?? 0,
      replicaFallbacks: this.#replica?.fallbacks ?? 0,
      size: this.#lru.size,
      live: this.#live,
    }
  }

  /** Every cached key and value, for inspection and tests (no recency update). */
  entries(): [string, TValue][] {
    return [...this.#lru.entries()]
  }

  /** Unsubscribes and stops the durable poll; the cache then stores nothing. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#untie()
    this.#live = false
    this.#options.herald.off('disconnected', this.#onDisconnected)
    this.#options.herald.off('reconnected', this.#onReconnected)
    if (this.#pendingTimer !== undefined) clearTimeout(this.#pendingTimer)
    this.#pendingTimer = undefined
    // A subscribe still waiting (for start(), for the database) must not hold close() up.
    this.#closing.abort(new HeraldError('CLOSED', 'the cache was closed'))
    await this.#ready.catch(() => {})
    await this.#relay?.close()
    await this.#durable?.close()
    await this.#subscription?.unsubscribe()
    this.clear()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  async #attach(): Promise<void> {
    const { herald, channel } = this.#options
    const signal = this.#closing.signal
    await this.#durable?.prepare()
    for (;;) {
      if (this.#closed) throw new HeraldError('CLOSED', 'the cache was closed')
      try {
        this.#subscription = await herald.subscribe(channel, (body, meta) => this.#receive(body, meta), {
          signal,
        })
        break
      } catch (error) {
        // A cache may be built before herald.start() (or during one that fails): subscribe
        // once it has connected.
        if (error instanceof HeraldError && error.code === 'NOT_STARTED') {
          await untilConnected(herald, signal)
          continue
        }
        throw error
      }
    }
    if (this.#closed) {
      await this.#subscription.unsubscribe()
      throw new HeraldError('CLOSED', 'the cache was closed')
    }
    // LISTEN is live, so every row committed from here on also arrives as a NOTIFY: the log
    // position taken now is where this (empty) cache stands.
    await this.#durable?.start()
    // A load that began before now may have read a row whose invalidation we could not hear.
    this.#markLoadsStale()
    this.#live = herald.connected
  }

  #storable(key: string, tags: readonly string[]): boolean {
    return this.#live && !this.#pending.blocks(key, tags)
  }

  /** Whether lru-cache kept it: it refuses an entry over `maxEntrySize` (or `maxSize`). */
  #store(key: string, value: TValue, tags: readonly string[], ttl: number | undefined): boolean {
    this.#evicting = 'set'
    try {
      this.#lru.set(key, value, ttl === undefined ? undefined : { ttl })
    } finally {
      this.#evicting = undefined
    }
    if (this.#lru.peek(key, { allowStale: true }) !== value) return false
    if (tags.length > 0) this.#tags.set(key, tags)
    return true
  }

  async #broadcast(
    change: {
      keys?: readonly string[] | undefined
      tags?: readonly string[] | undefined
      flush?: boolean | undefined
    },
    tx: TransactionRunner | undefined,
  ): Promise<void> {
    const pendingId = tx === undefined ? undefined : randomBytes(8).toString('base64url')
    // Block re-caching before the first await: a load started now would read the old row.
    if (pendingId !== undefined) {
      this.#pending.add(pendingId, { keys: change.keys, tags: change.tags, all: change.flush })
    }
    try {
      if (
        this.#relay !== undefined &&
        this.#durable !== undefined &&
        tx !== undefined &&
        pendingId !== undefined
      ) {
        // Only the log row goes in the transaction: no NOTIFY, so no commit lock for the writer.
        const logRef = await this.#durable.append(change, tx)
        this.#pending.identify(pendingId, logRef.tx)
        this.#relay.add({ pendingId, txid: logRef.tx, change })
        return
      }
      let logRef: LogRef | undefined
      if (this.#durable !== undefined) logRef = await this.#durable.append(change, tx)
      const body = this.#body(change, pendingId, logRef)
      const publishing = this.#options.herald.publish(this.#options.channel, body, {
        kind: INVALIDATION_KIND,
        ...(tx && { tx }),
      })
      if (tx !== undefined && pendingId !== undefined) {
        // The transaction id (to ask later whether it ended) is queried alongside the NOTIFY:
        // both are queued on the transaction's connection, one round trip for the two.
        const [txid] = await Promise.all([logRef?.tx ?? transactionId(tx), publishing])
        this.#pending.identify(pendingId, txid)
        this.#schedulePendingCheck()
      } else {
        await publishing
      }
      this.#invalidationsSent++
    } catch (error) {
      // Nothing will commit, so nothing will release the block.
      if (pendingId !== undefined) this.#pending.release(pendingId)
      throw toConnectionError(error, `invalidating cache ${this.name} failed`)
    }
  }

  /** Tells the other instances of relayed commits (already evicted here), in one message. */
  async #relayCommitted(entries: readonly RelayEntry[]): Promise<void> {
    const merged = mergeChanges(entries.map((entry) => entry.change))
    const size = (merged.keys?.length ?? 0) + (merged.tags?.length ?? 0)
    const change = size > this.#options.flushAboveKeys ? { flush: true } : merged
    const body = this.#body(change, undefined, undefined)
    await this.#options.herald.publish(this.#options.channel, body, { kind: INVALIDATION_KIND })
    this.#invalidationsSent++
  }

  /** A message of this cache instance. */
  #body(
    change: RelayedChange,
    pendingId: string | undefined,
    logRef: LogRef | undefined,
  ): Record<string, unknown> {
    return encodeInvalidation({
      cache: this.name,
      instance: this.#instance,
      keys: change.keys,
      tags: change.tags,
      flush: change.flush,
      pendingId,
      logRef,
    })
  }

  #receive(body: unknown, meta: MessageMeta): void {
    if (meta.kind !== INVALIDATION_KIND) return
    // Our own plain invalidation evicted here before it was sent: skip even decoding it.
    if (meta.self && isOwnPlainBody(body, this.#instance)) return
    let message: InvalidationMessage | undefined
    try {
      message = decodeInvalidation(body, this.name)
    } catch (error) {
      this.#emitError(error, 'invalid message')
      return
    }
    if (message === undefined) return
    const mine = meta.self && message.instance === this.#instance
    // Our own transactional invalidation arrives at commit and must evict again: a load
    // between the call and the commit read the old row.
    if (mine && message.pendingId === undefined) return
    this.#invalidationsReceived++
    this.#apply(message)
    if (mine && message.pendingId !== undefined) this.#pending.release(message.pendingId)
  }

  #apply(change: RelayedChange): void {
    if (change.flush) this.#flush('flush')
    if (change.keys !== undefined) for (const key of change.keys) this.#evictKey(key, 'invalidate')
    if (change.tags !== undefined) this.#evictTags(change.tags)
  }

  #evictKey(key: string, reason: EvictReason): void {
    this.#replica?.fenceKey(key)
    const load = this.#loads.get(key)
    if (load !== undefined) {
      load.stale = true
      this.#loads.delete(key)
    }
    this.#remove(key, reason)
  }

  #evictTags(tags: readonly string[]): void {
    this.#replica?.fenceAll()
    for (const [key, load] of this.#loads) {
      if (load.tags.some((tag) => tags.includes(tag))) {
        load.stale = true
        this.#loads.delete(key)
      }
    }
    for (const key of this.#tags.keysOf(tags)) this.#remove(key, 'tag')
  }

  #remove(key: string, reason: EvictReason): boolean {
    this.#evicting = reason
    try {
      return this.#lru.delete(key)
    } finally {
      this.#evicting = undefined
    }
  }

  #flush(reason: 'gap' | 'flush'): void {
    this.#replica?.fenceAll()
    this.#markLoadsStale()
    this.#flushes++
    this.#evicting = reason
    try {
      this.#lru.clear()
    } finally {
      this.#evicting = undefined
    }
    this.#tags.clear()
    safeEmit(this, 'flush', { reason })
  }

  #markLoadsStale(): void {
    for (const load of this.#loads.values()) load.stale = true
    this.#loads.clear()
  }

  #disposed(key: string, reason: LRUCache.DisposeReason): void {
    this.#tags.remove(key)
    if (this.listenerCount('evict') === 0) return
    const why: EvictReason =
      this.#evicting ?? (reason === 'expire' ? 'ttl' : reason === 'set' ? 'set' : 'lru')
    safeEmit(this, 'evict', { key, reason: why })
  }

  readonly #onDisconnected = (): void => {
    this.#live = false
    this.#generation++
  }

  readonly #onReconnected = (): void => {
    if (this.#subscription === undefined || this.#closed) return
    // Anything loaded across the gap may predate an invalidation we never received.
    this.#markLoadsStale()
    const generation = ++this.#generation
    if (this.#durable === undefined) {
      this.#flush('gap')
      this.#live = true
    } else {
      void this.#durable.replay().then(() => {
        // A newer gap started meanwhile: its own replay decides.
        if (generation === this.#generation && !this.#closed) this.#live = this.#options.herald.connected
      })
    }
    // Our own commit messages sent during the gap are lost: ask which transactions ended.
    void this.#checkPending(0)
  }

  #schedulePendingCheck(): void {
    if (this.#pendingTimer !== undefined || this.#closed) return
    this.#pendingTimer = setTimeout(() => {
      this.#pendingTimer = undefined
      void this.#checkPending(PENDING_CHECK_MS).finally(() => {
        if (this.#pending.size > 0) this.#schedulePendingCheck()
      })
    }, PENDING_CHECK_MS)
    this.#pendingTimer.unref()
  }

  /** Releases pending invalidations whose transaction has committed or rolled back. */
  async #checkPending(ageMs: number): Promise<void> {
    const candidates = this.#pending.olderThan(ageMs)
    if (candidates.length === 0) return
    try {
      const statuses = await transactionStatuses(
        this.#options.herald.sql,
        candidates.map(([, txid]) => txid),
      )
      candidates.forEach(([id], index) => {
        const status = statuses[index]
        if (status === undefined || status === 'in progress') return
        const released = this.#pending.release(id)
        // A commit we did not hear: a load that overlapped it may have read the old row.
        if (released !== undefined && status !== 'aborted') {
          this.#apply({ keys: released.keys, tags: released.tags, flush: released.all })
        }
      })
    } catch (error) {
      this.#emitError(error, 'checking pending invalidations failed')
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new HeraldError('CLOSED', `cache ${this.name} is closed`)
  }

  #emitError(error: unknown, context: string): void {
    safeEmit(this, 'error', toConnectionError(error, context))
  }
}

/** One change that evicts everything `changes` do: a flush covers the rest. */
/** The caller's transaction, refused with `INVALID_OPTION` before anything is evicted or sent. */
function transactionOf(options: InvalidateOptions, action: string): TransactionRunner | undefined {
  return options.tx === undefined ? undefined : toTransactionRunner(options.tx, action)
}

function mergeChanges(changes: readonly RelayedChange[]): RelayedChange {
  if (changes.some((change) => change.flush === true)) return { flush: true }
  const keys = new Set<string>()
  const tags = new Set<string>()
  for (const change of changes) {
    for (const key of change.keys ?? []) keys.add(key)
    for (const tag of change.tags ?? []) tags.add(tag)
  }
  return {
    keys: keys.size > 0 ? [...keys] : undefined,
    tags: tags.size > 0 ? [...tags] : undefined,
  }
}

function lazySql(herald: Herald): Sql<Record<string, unknown>> {
  // herald.sql exists once the Herald has started; the log's first query comes after that.
  return new Proxy(function () {} as unknown as Sql<Record<string, unknown>>, {
    apply: (_target, _this, args: unknown[]) =>
      (herald.sql as unknown as (...a: unknown[]) => unknown)(...args),
    get: (_target, property) => Reflect.get(herald.sql, property) as unknown,
  })
}

function isOwnPlainBody(body: unknown, instance: string): boolean {
  return (
    typeof body === 'object' && body !== null && (body as { i?: unknown }).i === instance && !('p' in body)
  )
}

/** Resolves at the Herald's next `connected`, or rejects when `signal` aborts. */
function untilConnected(herald: Herald, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onConnected = (): void => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }
    const onAbort = (): void => {
      herald.off('connected', onConnected)
      reject(signal.reason)
    }
    if (signal.aborted) return onAbort()
    herald.once('connected', onConnected)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

function assertKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) throw invalidKey(key)
}

function invalidKey(key: unknown): HeraldError {
  return new HeraldError('INVALID_KEY', `cache keys and tags must be non-empty strings, got ${describe(key)}`)
}

function describe(value: unknown): string {
  if (typeof value === 'string') return 'an empty string'
  if (value === null) return 'null'
  return typeof value
}

function keyList(keys: unknown): string[] {
  const list: unknown[] = typeof keys === 'string' ? [keys] : Array.isArray(keys) ? keys : [keys]
  for (const key of list) assertKey(key)
  return list.length > 1 ? [...new Set(list as string[])] : (list as string[])
}

function checkTags(tags: unknown): readonly string[] {
  if (tags === undefined) return NO_TAGS
  if (!Array.isArray(tags)) throw new HeraldError('INVALID_KEY', 'tags must be an array of non-empty strings')
  const list: readonly unknown[] = tags
  for (const tag of list) assertKey(tag)
  return list as readonly string[]
}
