/** The IPC protocol between `fanout.ts` and `fanout-receiver.ts`. */

/**
 * `herald`: Herald publish/subscribe and InvalidatingCache; `raw`: postgres.js notify/listen;
 * `pgListen`: pg-listen (on `pg`) notify and `notifications.on`.
 */
export type FanoutContender = 'herald' | 'raw' | 'pgListen'

export type ToReceiver =
  | {
      readonly type: 'start'
      readonly url: string
      /** Latency pings, Herald. */
      readonly heraldPing: string
      /** Latency pings, postgres.js. */
      readonly rawPing: string
      /** The channel every instance's InvalidatingCache shares. */
      readonly cacheChannel: string
      /** One NOTIFY per key, postgres.js. */
      readonly rawKeys: string
      /** Latency pings, pg-listen. */
      readonly pgListenPing: string
      /** One NOTIFY per key, pg-listen. */
      readonly pgListenKeys: string
      /** `max` of the cache: room for a round's keys, so nothing leaves by LRU. */
      readonly max: number
    }
  /** Fill the cache (herald) or the contender's Map (raw, pgListen) with the round's keys, then say 'filled'. */
  | {
      readonly type: 'fill'
      readonly round: number
      readonly contender: FanoutContender
      readonly keys: number
    }
  | { readonly type: 'stop' }

export type FromReceiver =
  | { readonly type: 'ready' }
  /** Ping `seq` reached this receiver's handler at `at` (performance.timeOrigin + performance.now()). */
  | { readonly type: 'got'; readonly contender: FanoutContender; readonly seq: number; readonly at: number }
  | { readonly type: 'filled'; readonly round: number }
  /** Every key of the round has left this instance's cache (or Map). */
  | { readonly type: 'evicted'; readonly round: number }
  | {
      readonly type: 'stopped'
      readonly heraldPings: number
      readonly rawPings: number
      readonly invalidationsReceived: number
      readonly rawKeyNotifications: number
      readonly pgListenPings: number
      readonly pgListenKeyNotifications: number
    }
  | { readonly type: 'failed'; readonly message: string }

/** The payload of a latency ping, for either contender. */
export interface FanoutPing {
  readonly seq: number
  readonly key: string
  readonly op: 'invalidate'
}

/** A round's keys: the round in the prefix, so no key repeats between rounds. */
export function fanoutKey(round: number, id: number): string {
  return `f${round}:user:${id}`
}
