import type { HeraldError } from '@herald/core'

/** A held lock. `release()` (or `await using`) lets it go and wakes waiters on every instance. */
export class Lock implements AsyncDisposable {
  readonly name: string
  /**
   * Fencing token: strictly increasing per lock name across every instance. Pass it to the
   * resource the lock protects and have it refuse a token lower than one it has seen, so a
   * holder that lost the lock without knowing (a paused process) cannot do harm.
   */
  readonly token: bigint
  readonly #controller = new AbortController()
  readonly #release: () => Promise<void>
  #released: Promise<void> | undefined

  /** @internal Created by `Locks`. */
  constructor(name: string, token: bigint, release: () => Promise<void>) {
    this.name = name
    this.token = token
    this.#release = release
  }

  /** Aborted (reason: HeraldError `LOCK_LOST`) when the lock is lost before `release()`: stop the work. */
  get signal(): AbortSignal {
    return this.#controller.signal
  }

  /** Whether `release()` was called or the lock was lost. */
  get held(): boolean {
    return this.#released === undefined && !this.#controller.signal.aborted
  }

  /** Unlocks, then tells every instance. Idempotent. */
  release(): Promise<void> {
    this.#released ??= this.#release()
    return this.#released
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release()
  }

  /** @internal */
  lose(error: HeraldError): void {
    if (this.#released === undefined) this.#controller.abort(error)
  }
}
