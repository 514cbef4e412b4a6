/** The IPC protocol between `propagation.ts` and `propagation-receiver.ts`. */

/** One contender's pair of channels: pings go out on `ping`, the receiver answers on `echo`. */
export interface EchoChannels {
  readonly ping: string
  readonly echo: string
}

export type ToReceiver =
  | {
      readonly type: 'start'
      readonly url: string
      readonly herald: EchoChannels
      readonly raw: EchoChannels
      readonly pgListen: EchoChannels
    }
  | { readonly type: 'stop' }

export type FromReceiver =
  | { readonly type: 'ready' }
  /** Pings each contender's handler saw: anything short of what was sent is a lost message. */
  | {
      readonly type: 'stopped'
      readonly herald: number
      readonly raw: number
      readonly pgListen: number
    }
  | { readonly type: 'failed'; readonly message: string }

/** The payload of every ping and echo: small, like a cache invalidation. */
export interface Ping {
  readonly seq: number
  readonly key: string
  readonly op: 'invalidate'
}
