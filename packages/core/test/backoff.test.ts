import { describe, expect, it } from 'vitest'
import { backoffDelay } from '../src/backoff.js'

describe('backoffDelay', () => {
  it('doubles from minDelayMs up to maxDelayMs', () => {
    const top = (attempt: number): number =>
      backoffDelay(attempt, { minDelayMs: 50, maxDelayMs: 10_000 }, () => 1)
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 50].map(top)).toEqual([
      50, 100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000,
    ])
  })

  it('jitters between half and all of the delay', () => {
    expect(backoffDelay(3, { minDelayMs: 100, maxDelayMs: 10_000 }, () => 0)).toBe(400)
    expect(backoffDelay(3, { minDelayMs: 100, maxDelayMs: 10_000 }, () => 0.5)).toBe(600)
    const seen = new Set(Array.from({ length: 50 }, () => backoffDelay(2)))
    expect(seen.size).toBeGreaterThan(1)
    for (const delay of seen) expect(delay).toBeGreaterThanOrEqual(100)
  })
})
