import type { Summary } from './stats.js'

/** How much to measure; read from the environment by `readOptions`. */
export interface BenchOptions {
  /** Samples kept per contender. */
  readonly samples: number
  /** Samples discarded per contender before those kept: JIT, prepared statements, pool warm-up. */
  readonly warmup: number
  /** A short smoke run, whose figures are not worth publishing. */
  readonly quick: boolean
}

export interface BenchContext extends BenchOptions {
  /** Connection string of the server every contender uses. */
  readonly url: string
}

export interface ContenderResult {
  readonly id: string
  /** Short, for ratios: `Herald`. */
  readonly name: string
  /** What is measured, for the table. */
  readonly label: string
  /** Latency in milliseconds. */
  readonly summary: Summary
}

/** How one contender fares against another: `of` / `to`, so below 1 means `of` is faster. */
export interface Comparison {
  readonly of: string
  readonly to: string
  readonly p50: number
  readonly p99: number
  /** A goal for the p50 ratio, when there is one. */
  readonly target?: { readonly maxP50Ratio: number; readonly met: boolean }
}

export interface BenchmarkResult {
  readonly name: string
  readonly title: string
  /** How latency is obtained, in one sentence, for readers of the results. */
  readonly method: string
  readonly contenders: readonly ContenderResult[]
  readonly comparisons: readonly Comparison[]
  /** Counters that show the run was sound (nothing lost, nothing coalesced). */
  readonly checks: Readonly<Record<string, number>>
}

export interface Benchmark {
  readonly name: string
  run(context: BenchContext): Promise<BenchmarkResult>
}
