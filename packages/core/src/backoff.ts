export interface BackoffOptions {
  /** First retry delay, before jitter, in ms. @default 50 */
  minDelayMs?: number
  /** Largest retry delay, before jitter, in ms. @default 10000 */
  maxDelayMs?: number
}

export const DEFAULT_MIN_DELAY_MS = 50
export const DEFAULT_MAX_DELAY_MS = 10_000

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential, capped, with jitter in
 * [50 %, 100 %] so a fleet restarted together does not reconnect in lockstep.
 * With the defaults: 50, 100, 200, 400, 800, 1600, 3200, 6400, then 10000 ms (each × 0.5–1).
 */
export function backoffDelay(
  attempt: number,
  { minDelayMs = DEFAULT_MIN_DELAY_MS, maxDelayMs = DEFAULT_MAX_DELAY_MS }: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const exponential = Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(attempt, 30))
  return Math.round(exponential * (0.5 + random() / 2))
}
