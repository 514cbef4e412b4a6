/**
 * Timers behind an interface so unit tests can drive time. A started Herald keeps its process
 * alive as an open socket would (its listener connection, or the timer of a pending
 * reconnect); every other timer is unref()ed so it never does.
 */
export interface Clock {
  now(): number
  /** `keepAlive` timers hold the process open (a pending reconnect); all others are unref()ed. */
  setTimeout(callback: () => void, delayMs: number, keepAlive?: boolean): TimerHandle
  clearTimeout(handle: TimerHandle): void
}

export type TimerHandle = { readonly __timer: unique symbol } | ReturnType<typeof setTimeout>

export const systemClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
  setTimeout(callback, delayMs, keepAlive = false) {
    const handle = setTimeout(callback, delayMs)
    if (!keepAlive) handle.unref()
    return handle
  },
  clearTimeout(handle) {
    clearTimeout(handle as ReturnType<typeof setTimeout>)
  },
}
