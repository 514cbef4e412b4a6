import { HeraldError } from './errors.js'

/** What a handler learns about a message besides its payload. */
export interface MessageMeta {
  /** The channel it arrived on. */
  readonly channel: string
  /** True when this `Herald` published it. */
  readonly self: boolean
  /** Id of the publishing `Herald` (`sql` for triggers, `cli` for the command line). */
  readonly origin: string
  /** The envelope's kind; `'message'` for a plain `publish()`. */
  readonly kind: string
  /** `Date.now()` when the notification was received. */
  readonly receivedAt: number
}

/**
 * Receives each message on a channel. The payload is shared by every handler of the channel:
 * treat it as read-only. A returned promise counts against the subscription's `concurrency`;
 * any other return value is ignored, so `(order) => seen.push(order)` is a handler too.
 */
export type MessageHandler<TPayload = unknown> = (payload: TPayload, meta: MessageMeta) => unknown

export interface SubscriptionStats {
  /** Messages handed to the handler. */
  readonly delivered: number
  /** Async handler calls still running. */
  readonly running: number
  /** Messages waiting for a free slot under `concurrency`. */
  readonly queued: number
  /** Handler calls that threw or rejected. */
  readonly failed: number
}

/** A live subscription: `unsubscribe()` (or `await using`) stops it. */
export class Subscription<TPayload = unknown> {
  readonly channel: string
  readonly #handler: MessageHandler<TPayload>
  readonly #concurrency: number
  readonly #onError: (error: HeraldError) => void
  readonly #detach: (subscription: Subscription<TPayload>) => Promise<void>
  readonly #queue: [TPayload, MessageMeta][] = []
  readonly #running = new Set<Promise<void>>()
  #delivered = 0
  #failed = 0
  #active = true
  #unsubscribing: Promise<void> | undefined

  /** @internal Created by `Herald.subscribe`. */
  constructor(
    channel: string,
    handler: MessageHandler<TPayload>,
    concurrency: number,
    onError: (error: HeraldError) => void,
    detach: (subscription: Subscription<TPayload>) => Promise<void>,
  ) {
    this.channel = channel
    this.#handler = handler
    this.#concurrency = concurrency
    this.#onError = onError
    this.#detach = detach
  }

  get active(): boolean {
    return this.#active
  }

  stats(): SubscriptionStats {
    return {
      delivered: this.#delivered,
      running: this.#running.size,
      queued: this.#queue.length,
      failed: this.#failed,
    }
  }

  /** Stops delivery at once and UNLISTENs the channel if this was its last subscription. Idempotent. */
  unsubscribe(): Promise<void> {
    if (this.#unsubscribing === undefined) {
      this.#stop()
      this.#unsubscribing = this.#detach(this)
    }
    return this.#unsubscribing
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.unsubscribe()
  }

  /** @internal */
  deliver(payload: TPayload, meta: MessageMeta): void {
    if (!this.#active) return
    if (this.#running.size >= this.#concurrency) {
      this.#queue.push([payload, meta])
      return
    }
    this.#run(payload, meta)
  }

  /** @internal Stops delivering; queued messages are dropped, running handlers go on. */
  stop(): void {
    this.#stop()
  }

  /** @internal Settles once every running handler has. */
  async settled(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running])
  }

  #stop(): void {
    this.#active = false
    this.#queue.length = 0
  }

  #run(payload: TPayload, meta: MessageMeta): void {
    this.#delivered++
    let result: unknown
    try {
      result = this.#handler(payload, meta)
    } catch (error) {
      this.#fail(error)
      return
    }
    if (!isPromiseLike(result)) return
    const running: Promise<void> = Promise.resolve(result).then(
      () => this.#finish(running),
      (error: unknown) => {
        this.#fail(error)
        this.#finish(running)
      },
    )
    this.#running.add(running)
  }

  #finish(running: Promise<void>): void {
    this.#running.delete(running)
    const next = this.#active ? this.#queue.shift() : undefined
    if (next !== undefined) this.#run(next[0], next[1])
  }

  #fail(error: unknown): void {
    this.#failed++
    this.#onError(
      new HeraldError('HANDLER_FAILED', `a handler of channel ${this.channel} threw`, {
        cause: error,
        details: { channel: this.channel },
      }),
    )
  }
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function'
  )
}
