import type { BenchOptions } from './benchmark.js'

const DEFAULT_SAMPLES = 2_000
const DEFAULT_WARMUP = 200
// Enough to prove every path works end to end in a few seconds, not to be quoted.
const QUICK_SAMPLES = 200
const QUICK_WARMUP = 50
// Rate and size benchmarks: an odd count, so the median is a measured repetition.
const DEFAULT_REPETITIONS = 9
const QUICK_REPETITIONS = 3

/**
 * BENCH_QUICK=1 for a smoke run; BENCH_SAMPLES, BENCH_WARMUP and BENCH_REPETITIONS override
 * the defaults.
 * @throws Error for a value that is not a whole number (a typo must not silently run 2,000).
 */
export function readOptions(env: NodeJS.ProcessEnv): BenchOptions {
  const quick = env['BENCH_QUICK'] === '1' || env['BENCH_QUICK'] === 'true'
  return {
    quick,
    samples: count(env, 'BENCH_SAMPLES', quick ? QUICK_SAMPLES : DEFAULT_SAMPLES, 1),
    warmup: count(env, 'BENCH_WARMUP', quick ? QUICK_WARMUP : DEFAULT_WARMUP, 0),
    repetitions: count(env, 'BENCH_REPETITIONS', quick ? QUICK_REPETITIONS : DEFAULT_REPETITIONS, 1),
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
