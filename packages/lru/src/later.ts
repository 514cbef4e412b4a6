/**
 * Runs `callback` after `delayMs`, or at the next turn of the event loop for 0 (setTimeout(0)
 * waits a millisecond, which a relay that just found work should not). Unref'd like every
 * timer of the library. Returns a function that cancels it.
 */
export function later(callback: () => void, delayMs: number): () => void {
  if (delayMs === 0) {
    const immediate = setImmediate(callback)
    immediate.unref()
    return () => clearImmediate(immediate)
  }
  const timer = setTimeout(callback, delayMs)
  timer.unref()
  return () => clearTimeout(timer)
}
