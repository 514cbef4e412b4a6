import {
  assertChannelName,
  assertPlainIdentifier,
  HeraldError,
  systemClock,
  type Clock,
  type Herald,
} from '@herald/core'
import type { LRUCache } from 'lru-cache'
import type { Sql } from 'postgres'
import type { ReplicaOptions, ResolvedReplicaOptions } from './replica-guard.js'

/** The lru-cache options an InvalidatingCache passes through (see lru-cache's docs for each). */
export type LruOptions<TValue extends {}> = Pick<
  LRUCache.Options<string, TValue, unknown>,
  | 'max'
  | 'maxSize'
  | 'maxEntrySize'
  | 'sizeCalculation'
  | 'ttl'
  | 'ttlResolution'
  | 'ttlAutopurge'
  | 'updateAgeOnGet'
  | 'updateAgeOnHas'
  | 'allowStale'
  | 'noDeleteOnStaleGet'
>

export interface DurableOptions {
  /** Client for the log table. @default herald.sql */
  sql?: Sql<Record<string, unknown>>
  /** Schema of the log tables. @default 'herald' */
  schema?: string
  /** Create the log tables on first use. @default true */
  migrate?: boolean
  /** How often the log is read as a backstop for a lost NOTIFY, in ms. @default 5000 */
  pollMs?: number
  /** Rows older than this are pruned (and a reader that far behind flushes), in ms. @default 86400000 (1 day) */
  retentionMs?: number
  /** A reader with more rows than this to replay flushes instead. @default 10000 */
  maxReplayRows?: number
  /**
   * Deliver `invalidate(…, { tx })` after commit from this instance instead of NOTIFYing inside
   * the writer's transaction. Postgres serializes the commits of transactions that NOTIFY (a
   * server-wide lock); with `relay` the writer only inserts its log row, and this instance sends
   * one message for many writers' commits. Writers keep nearly their throughput without
   * notifications; other instances evict about a millisecond later than with an in-transaction
   * NOTIFY (the time to see the commit). If this instance dies between a commit and its relay,
   * or is closed while a transaction it waits for is still open, the other instances still
   * evict on their next log poll (`pollMs`) — so give every instance of a relaying cache
   * `durable` too: a peer without the log has only the NOTIFY. A failed relay message is
   * retried until it is sent or the cache closes.
   * @default false
   */
  relay?: boolean
}

export interface InvalidatingCacheOptions<TValue extends {}> extends LruOptions<TValue> {
  /** The process's one `Herald`; the cache subscribes through it. */
  herald: Herald
  /** Scopes keys: messages for other names on the channel are ignored. */
  name: string
  /** @default 'cache_invalidation' */
  channel?: string
  /**
   * While the listener connection is down, invalidations from other instances cannot arrive:
   * `'bypass'` makes `get` miss and `getOrLoad` load from the source without caching;
   * `'serve-stale'` keeps serving what is cached (and caches nothing new). Either way the cache
   * flushes (or replays, when durable) on reconnect.
   * @default 'bypass'
   */
  onDisconnect?: 'bypass' | 'serve-stale'
  /**
   * Record every invalidation in a log table, in the invalidating transaction, so that a
   * reconnecting instance replays what it missed instead of flushing. `true` for the defaults.
   * @default false
   */
  durable?: boolean | DurableOptions
  /**
   * An `invalidate` of more keys than this sends one "flush this cache" message instead.
   * @default 250000
   */
  flushAboveKeys?: number
  /**
   * A transactional invalidation blocks caching its keys on this instance until its commit is
   * seen; after this long (a rollback sends nothing) the block lifts, in ms.
   * @default 60000
   */
  pendingTimeoutMs?: number
  /**
   * Load from a read replica without caching what it has not replayed yet: `getOrLoad` passes
   * `replica.sql` to the loader, and a load that follows an invalidation of its key (or of a tag,
   * or a flush) waits until the replica has replayed past that invalidation's commit, at most
   * `maxWaitMs`, then falls back (see {@link ReplicaOptions}).
   * @default undefined (loaders get the primary client; no waiting)
   */
  replica?: ReplicaOptions
  /** @internal */
  clock?: Clock
}

export interface ResolvedDurableOptions {
  readonly sql: Sql<Record<string, unknown>> | undefined
  readonly schema: string
  readonly migrate: boolean
  readonly pollMs: number
  readonly retentionMs: number
  readonly maxReplayRows: number
  readonly relay: boolean
}

export interface ResolvedCacheOptions<TValue extends {}> {
  readonly herald: Herald
  readonly name: string
  readonly channel: string
  readonly onDisconnect: 'bypass' | 'serve-stale'
  readonly durable: ResolvedDurableOptions | undefined
  readonly flushAboveKeys: number
  readonly pendingTimeoutMs: number
  readonly replica: ResolvedReplicaOptions | undefined
  readonly clock: Clock
  readonly lru: LruOptions<TValue>
}

export function resolveCacheOptions<TValue extends {}>(
  options: InvalidatingCacheOptions<TValue>,
): ResolvedCacheOptions<TValue> {
  if (typeof options !== 'object' || options === null) {
    throw new HeraldError('INVALID_OPTION', 'new InvalidatingCache(options) needs an options object')
  }
  const {
    herald,
    name,
    channel = 'cache_invalidation',
    onDisconnect = 'bypass',
    durable,
    flushAboveKeys = 250_000,
    pendingTimeoutMs = 60_000,
    replica,
    clock = systemClock,
    ...lru
  } = options
  if (typeof herald !== 'object' || herald === null || typeof herald.subscribe !== 'function') {
    throw new HeraldError('INVALID_OPTION', 'InvalidatingCache needs `herald`, the process’s Herald')
  }
  if (typeof name !== 'string' || name.length === 0 || name.length > 200) {
    throw new HeraldError(
      'INVALID_OPTION',
      `name must be a string of 1 to 200 characters, got ${JSON.stringify(name)}`,
    )
  }
  assertChannelName(channel)
  if (onDisconnect !== 'bypass' && onDisconnect !== 'serve-stale') {
    throw new HeraldError(
      'INVALID_OPTION',
      `onDisconnect must be 'bypass' or 'serve-stale', got ${String(onDisconnect)}`,
    )
  }
  if (lru.maxSize !== undefined && lru.sizeCalculation === undefined) {
    throw new HeraldError('INVALID_OPTION', 'maxSize needs sizeCalculation: set() takes no size of its own')
  }
  if (lru.max === undefined && lru.maxSize === undefined && lru.ttl === undefined) {
    throw new HeraldError(
      'INVALID_OPTION',
      'give at least one of max, maxSize or ttl, so the cache is bounded',
    )
  }
  return {
    herald,
    name,
    channel,
    onDisconnect,
    durable: resolveDurable(durable),
    flushAboveKeys: positive('flushAboveKeys', flushAboveKeys),
    pendingTimeoutMs: positive('pendingTimeoutMs', pendingTimeoutMs),
    replica: resolveReplica(replica),
    clock,
    lru,
  }
}

function resolveDurable(durable: boolean | DurableOptions | undefined): ResolvedDurableOptions | undefined {
  if (durable === undefined || durable === false) return undefined
  const options: DurableOptions = durable === true ? {} : durable
  const schema = assertPlainIdentifier('durable.schema', options.schema ?? 'herald')
  return {
    sql: options.sql,
    schema,
    migrate: options.migrate ?? true,
    pollMs: positive('durable.pollMs', options.pollMs ?? 5_000),
    retentionMs: positive('durable.retentionMs', options.retentionMs ?? 86_400_000),
    maxReplayRows: positive('durable.maxReplayRows', options.maxReplayRows ?? 10_000),
    relay: flag('durable.relay', options.relay ?? false),
  }
}

function resolveReplica(replica: ReplicaOptions | undefined): ResolvedReplicaOptions | undefined {
  if (replica === undefined) return undefined
  if (typeof replica !== 'object' || replica === null || typeof replica.sql !== 'function') {
    throw new HeraldError('INVALID_OPTION', 'replica needs `sql`, a postgres.js client of the read replica')
  }
  if (replica.primary !== undefined && typeof replica.primary !== 'function') {
    throw new HeraldError('INVALID_OPTION', 'replica.primary must be a postgres.js client')
  }
  const fallback = replica.fallback ?? 'primary'
  if (fallback !== 'primary' && fallback !== 'no-cache') {
    throw new HeraldError(
      'INVALID_OPTION',
      `replica.fallback must be 'primary' or 'no-cache', got ${String(fallback)}`,
    )
  }
  return {
    sql: replica.sql,
    primary: replica.primary,
    maxWaitMs: positive('replica.maxWaitMs', replica.maxWaitMs ?? 1_000),
    pollMs: positive('replica.pollMs', replica.pollMs ?? 10),
    fallback,
  }
}

function flag(name: string, value: boolean): boolean {
  if (typeof value !== 'boolean') {
    throw new HeraldError('INVALID_OPTION', `${name} must be true or false, got ${String(value)}`)
  }
  return value
}

function positive(name: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new HeraldError('INVALID_OPTION', `${name} must be a positive finite number, got ${String(value)}`)
  }
  return value
}
