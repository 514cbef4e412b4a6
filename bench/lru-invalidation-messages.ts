/** The IPC protocol between `lru-invalidation-throughput.ts` and `lru-invalidation-receiver.ts`. */

/** How a round's keys are invalidated; `raw` is the baseline, one NOTIFY per key. */
export type InvalidationMode = 'heraldBatched' | 'heraldArray' | 'raw'

export type ToReceiver =
  | {
      readonly type: 'start'
      readonly url: string
      /** The channel every instance's InvalidatingCache shares. */
      readonly channel: string
      /** The channel of the raw contender's NOTIFYs. */
      readonly rawChannel: string
      /** `max` of the cache: room for a round's keys, so nothing leaves by LRU. */
      readonly max: number
    }
  /** Fill the cache (Herald modes) or the Map (raw) with the round's keys, then say 'filled'. */
  | { readonly type: 'fill'; readonly round: number; readonly mode: InvalidationMode; readonly keys: number }
  | { readonly type: 'stop' }

export type FromReceiver =
  | { readonly type: 'ready' }
  | { readonly type: 'filled'; readonly round: number }
  /** Every key of the round has left this instance's cache (or Map). */
  | { readonly type: 'evicted'; readonly round: number }
  | {
      readonly type: 'stopped'
      /** Notifications the receiver's Herald got (coalesced envelopes, chunk frames count once each). */
      readonly heraldNotifications: number
      /** Invalidation messages the cache applied. */
      readonly invalidationsReceived: number
      /** Raw NOTIFYs received. */
      readonly rawNotifications: number
    }
  | { readonly type: 'failed'; readonly message: string }

/** A round's keys: the round in the prefix, so no key repeats and a late message cannot count twice. */
export function roundKey(round: number, id: number): string {
  return `r${round}:user:${id}`
}
