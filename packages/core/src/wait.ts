import { HeraldError } from './errors.js'
import type { Clock } from './clock.js'

export interface WaitOptions {
  /** Rejects the wait with `ABORTED` (cause: `signal.reason`) when aborted. */
  signal?: AbortSignal | undefined
  /** Rejects the wait with `TIMEOUT` after this many milliseconds. */
  timeoutMs?: number | undefined
}

/**
 * Races `promise` against a signal and a timeout, cleaning both up whichever wins, so an
 * abandoned wait leaves no listener or timer behind.
 */
export function raceWait<T>(
  promise: Promise<T>,
  options: WaitOptions,
  clock: Clock,
  what: string,
): Promise<T> {
  const { signal, timeoutMs } = options
  if (signal === undefined && timeoutMs === undefined) return promise
  if (signal?.aborted === true) return Promise.reject(aborted(signal, what))
  return new Promise<T>((resolve, reject) => {
    const timer =
      timeoutMs === undefined
        ? undefined
        : clock.setTimeout(() => {
            cleanup()
            reject(new HeraldError('TIMEOUT', `${what} timed out after ${timeoutMs} ms`))
          }, timeoutMs)
    const onAbort = (): void => {
      cleanup()
      reject(aborted(signal as AbortSignal, what))
    }
    const cleanup = (): void => {
      if (timer !== undefined) clock.clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => {
        cleanup()
        resolve(value)
      },
      (error: unknown) => {
        cleanup()
        reject(error)
      },
    )
  })
}

function aborted(signal: AbortSignal, what: string): HeraldError {
  return new HeraldError('ABORTED', `${what} was aborted`, { cause: signal.reason })
}

export function assertWaitOptions(options: WaitOptions): void {
  const { timeoutMs } = options
  if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs >= 0)) {
    throw new HeraldError('INVALID_OPTION', `timeoutMs must be a finite number >= 0, got ${timeoutMs}`)
  }
}

export interface Deferred<T> {
  readonly promise: Promise<T>
  resolve(value: T): void
  reject(error: unknown): void
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void
  let reject!: (error: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}
