import type { BenchOptions } from './benchmark.js'

const DEFAULT_SAMPLES = 2_000
const DEFAULT_WARMUP = 200
// Enough to prove every path works end to end in a few seconds, not to be quoted.
const QUICK_SAMPLES = 200
const QUICK_WARMUP = 50

/**
 * BENCH_QUICK=1 for a smoke run; BENCH_SAMPLES and BENCH_WARMUP override either default.
 * @throws Error for a value that is not a whole number (a typo must not silently run 2,000).
 */
export function readOptions(env: NodeJS.ProcessEnv): BenchOptions {
  const quick = env['BENCH_QUICK'] === '1' || env['BENCH_QUICK'] === 'true'
  return {
    quick,
    samples: count(env, 'BENCH_SAMPLES', quick ? QUICK_SAMPLES : DEFAULT_SAMPLES, 1),
    warmup: count(env, 'BENCH_WARMUP', quick ? QUICK_WARMUP : DEFAULT_WARMUP, 0),
  }
}

function count(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number): number {
  const text = env[name]
  if (text === undefined || text === '') return fallback
  const value = Number(text)
  if (!Number.isInteger(value) || value < min)
    throw new Error(`${name} must be a whole number >= ${min}, got ${JSON.stringify(text)}`)
  return value
}
