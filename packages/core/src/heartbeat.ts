import { HeraldError } from './errors.js'
import type { Clock, TimerHandle } from './clock.js'

export interface HeartbeatOptions {
  /** Time between the end of one probe and the start of the next, in ms. */
  intervalMs: number
  /** A probe not answered within this many ms means the connection is dead. */
  timeoutMs: number
  clock: Clock
  /** A round trip on the watched connection. */
  probe: () => Promise<void>
  onBeat: (roundTripMs: number) => void
  onDead: (error: HeraldError) => void
}

/**
 * Finds a dead or half-open connection. TCP alone can take minutes to notice a peer that
 * stopped answering (a paused backend, a dropped NAT entry); a query with a deadline cannot.
 * With interval and timeout both `heartbeatMs / 2`, a connection that dies right after a
 * good probe is declared dead at most `heartbeatMs` later.
 */
export class Heartbeat {
  readonly #options: HeartbeatOptions
  #timer: TimerHandle | undefined
  #stopped = false

  constructor(options: HeartbeatOptions) {
    this.#options = options
  }

  start(): void {
    this.#schedule(this.#options.intervalMs, () => this.#beat())
  }

  stop(): void {
    this.#stopped = true
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #beat(): void {
    const { clock, timeoutMs, probe } = this.#options
    const sentAt = clock.now()
    let settled = false
    this.#schedule(timeoutMs, () => {
      if (settled) return
      settled = true
      this.stop()
      this.#options.onDead(
        new HeraldError(
          'CONNECTION_FAILED',
          `the listener connection missed its heartbeat (${timeoutMs} ms)`,
        ),
      )
    })
    probe().then(
      () => {
        if (settled || this.#stopped) return
        settled = true
        this.#options.onBeat(clock.now() - sentAt)
        this.#schedule(this.#options.intervalMs, () => this.#beat())
      },
      (error: unknown) => {
        if (settled || this.#stopped) return
        settled = true
        this.stop()
        this.#options.onDead(
          new HeraldError('CONNECTION_FAILED', 'the listener heartbeat query failed', { cause: error }),
        )
      },
    )
  }

  #schedule(delayMs: number, callback: () => void): void {
    if (this.#stopped) return
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer)
    this.#timer = this.#options.clock.setTimeout(callback, delayMs)
  }
}
