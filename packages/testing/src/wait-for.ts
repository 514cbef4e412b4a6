import { setTimeout as sleep } from 'node:timers/promises'

/** Options for {@link waitFor}. */
export interface WaitForOptions {
  /**
   * Give up after this many milliseconds.
   * @default 10_000
   */
  timeoutMs?: number
  /**
   * Pause between checks, in milliseconds.
   * @default 10
   */
  intervalMs?: number
  /**
   * Start of the timeout error's message.
   * @default 'waitFor: condition not met'
   */
  message?: string
}

/** `T` without its falsy members: what {@link waitFor} can resolve with. */
export type Truthy<T> = Exclude<T, false | 0 | 0n | '' | null | undefined>

/**
 * Calls `check` until it returns (or resolves to) a truthy value without
 * throwing, and returns that value. On timeout it rejects with `message`, the
 * last error (also as `cause`) or the last falsy value. A check that hangs
 * counts against the timeout too.
 */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  options: WaitForOptions = {},
): Promise<Truthy<T>> {
  const { timeoutMs = 10_000, intervalMs = 10, message = 'waitFor: condition not met' } = options
  const deadline = Date.now() + timeoutMs
  let last: { error: unknown } | { value: unknown } = { value: undefined }
  for (;;) {
    const remaining = deadline - Date.now()
    if (remaining <= 0) break
    let timer: NodeJS.Timeout | undefined
    const expired = Symbol('expired')
    try {
      const value = await Promise.race([
        Promise.resolve().then(check),
        new Promise<typeof expired>((resolve) => {
          timer = setTimeout(resolve, remaining, expired)
        }),
      ])
      if (value === expired) break
      if (value) return value as Truthy<T>
      last = { value }
    } catch (error) {
      last = { error }
    } finally {
      clearTimeout(timer)
    }
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())))
  }
  if ('error' in last) {
    const reason = last.error instanceof Error ? last.error.message : String(last.error)
    throw new Error(`${message} after ${timeoutMs} ms; last error: ${reason}`, { cause: last.error })
  }
  throw new Error(`${message} after ${timeoutMs} ms; last value: ${String(last.value)}`)
}
