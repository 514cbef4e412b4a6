/** The current time in ms, injectable so tests can expire pending invalidations deterministically. */
export interface Clock {
  now(): number
}

export const systemClock: Clock = { now: () => Date.now() }
