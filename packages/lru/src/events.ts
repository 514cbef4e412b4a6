import type { HeraldError } from '@herald/core'

/**
 * Why an entry left the cache.
 * - `invalidate`: `invalidate(key)` here or on another instance.
 * - `tag`: `invalidateTags` of one of its tags.
 * - `flush`: `invalidateAll()`, or more keys at once than `flushAboveKeys`.
 * - `gap`: the listener connection was lost, so invalidations may have been missed.
 * - `delete`: `delete(key)` or `clear()` on this instance only.
 * - `lru`: pushed out by `max` / `maxSize`.
 * - `ttl`: expired.
 * - `set`: replaced by a newer value for the same key.
 */
export type EvictReason = 'invalidate' | 'tag' | 'flush' | 'gap' | 'delete' | 'lru' | 'ttl' | 'set'

export interface EvictEvent {
  readonly key: string
  readonly reason: EvictReason
}

export interface FlushEvent {
  /** `gap`: after a reconnect (not durable, or the log did not reach back); `flush`: a flush message. */
  readonly reason: 'gap' | 'flush'
}

export interface ReplayEvent {
  /** Log rows applied after the gap. */
  readonly rows: number
  /** How long reading and applying them took, in ms. */
  readonly durationMs: number
}

export interface CacheEvents {
  /** An entry left the cache. Listening costs a little on every eviction; nothing on hits. */
  evict: [event: EvictEvent]
  /** The whole cache was emptied. */
  flush: [event: FlushEvent]
  /** Durable mode: what was missed during a gap was replayed from the log instead of flushing. */
  replay: [event: ReplayEvent]
  /** A background failure (an invalid message, a failed log read); the cache stays correct. */
  error: [error: HeraldError]
}
