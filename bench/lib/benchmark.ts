import type { Summary } from './stats.js'

/** How much to measure; read from the environment by `readOptions`. */
export interface BenchOptions {
  /** Samples kept per contender (latency benchmarks). */
  readonly samples: number
  /** Samples discarded per contender before those kept: JIT, prepared statements, pool warm-up. */
  readonly warmup: number
  /**
   * Repetitions kept per contender (rate and size benchmarks, whose figure is the median of
   * the repetitions); each benchmark discards a few of its own first.
   */
  readonly repetitions: number
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
  /** Samples discarded before those kept, when a benchmark's contenders differ (else the run's warm-up). */
  readonly discarded?: number
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

/** A latency benchmark: every sample kept, summarized by percentiles. */
export interface LatencyResult {
  readonly kind: 'latency'
  readonly name: string
  readonly title: string
  /** How latency is obtained, in one sentence, for readers of the results. */
  readonly method: string
  readonly contenders: readonly ContenderResult[]
  readonly comparisons: readonly Comparison[]
  /** Counters that show the run was sound (nothing lost, nothing coalesced). */
  readonly checks: Readonly<Record<string, number>>
}

/** What a repeated benchmark measures per repetition, and which way is better. */
export interface Unit {
  /** Printed with every figure: `ops/s`, `keys/s`, `bytes/entry`. */
  readonly name: string
  readonly better: 'higher' | 'lower'
}

/** One contender's figure in every kept repetition, in the order they ran, and their spread. */
export interface Figures {
  readonly values: readonly number[]
  readonly median: number
  readonly min: number
  readonly max: number
}

export interface RepeatedContender {
  readonly id: string
  /** Short, for ratios: `Herald`. */
  readonly name: string
  /** What is measured, for the table. */
  readonly label: string
  readonly figures: Figures
}

/**
 * `of` / `to`, paired by repetition: the ratio of the two figures measured in the same
 * repetition (moments apart, so load drift cancels out), then the median of those ratios.
 */
export interface RatioComparison {
  readonly of: string
  readonly to: string
  readonly median: number
  readonly min: number
  readonly max: number
  readonly target?: RatioTarget
}

/** A goal for the median ratio: at least `value` (a rate), or at most `value` (a size). */
export interface RatioTarget {
  readonly bound: 'atLeast' | 'atMost'
  readonly value: number
  readonly met: boolean
}

/**
 * A rate or size benchmark: every contender measured once per repetition, in a fresh random
 * order each time, and compared by the median of the paired ratios.
 */
export interface RepeatedResult {
  readonly kind: 'repeated'
  readonly name: string
  readonly title: string
  /** How a figure is obtained, in a sentence or two, for readers of the results. */
  readonly method: string
  readonly unit: Unit
  /** Repetitions kept per contender. */
  readonly repetitions: number
  /** Repetitions run first and thrown away (JIT, pools, first LISTEN). */
  readonly discarded: number
  readonly contenders: readonly RepeatedContender[]
  readonly comparisons: readonly RatioComparison[]
  /** Counters that show the run was sound (every lookup a hit, every key evicted, ...). */
  readonly checks: Readonly<Record<string, number>>
  /** Other measured figures worth a line under the table, in words. */
  readonly findings?: readonly string[]
}

export type BenchmarkResult = LatencyResult | RepeatedResult

export interface Benchmark {
  readonly name: string
  /** The line printed before it runs: how much it measures. */
  plan(context: BenchContext): string
  run(context: BenchContext): Promise<BenchmarkResult>
}
