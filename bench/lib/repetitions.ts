import type { Figures, RatioComparison, RatioTarget } from './benchmark.js'
import { median } from './stats.js'

/** Each contender's figure per kept repetition, in the order the repetitions ran. */
export type Measured<TId extends string> = Record<TId, number[]>

export interface RepetitionPlan {
  /** Repetitions kept. */
  readonly repetitions: number
  /** Repetitions run first and thrown away: JIT tiers, pool connections, the first LISTEN. */
  readonly discard: number
}

/**
 * Runs `discard + repetitions` rounds, each measuring every contender once in a fresh random
 * order, so whatever drifts during the run (load, CPU frequency, a GC debt carried over)
 * lands on every contender alike and the paired ratio of a round compares like with like.
 */
export async function interleave<TId extends string>(
  ids: readonly TId[],
  plan: RepetitionPlan,
  measure: (id: TId, round: number) => number | Promise<number>,
): Promise<Measured<TId>> {
  const measured = Object.fromEntries(ids.map((id) => [id, [] as number[]])) as Measured<TId>
  for (let round = 0; round < plan.discard + plan.repetitions; round++) {
    for (const id of shuffled(ids)) {
      const figure = await measure(id, round)
      if (!Number.isFinite(figure) || figure <= 0) throw new Error(`${id}: round ${round} measured ${figure}`)
      if (round >= plan.discard) measured[id].push(figure)
    }
  }
  return measured
}

export function figures(values: readonly number[]): Figures {
  return { values, median: median(values), min: Math.min(...values), max: Math.max(...values) }
}

/**
 * `of` / `to` per repetition, then the median of those ratios; with a target, whether that
 * median meets it.
 */
export function compare<TId extends string>(
  measured: Measured<TId>,
  of: TId,
  to: TId,
  target?: Omit<RatioTarget, 'met'>,
): RatioComparison {
  const ratios = measured[of].map((value, index) => value / (measured[to][index] as number))
  const ratio = median(ratios)
  return {
    of,
    to,
    median: ratio,
    min: Math.min(...ratios),
    max: Math.max(...ratios),
    ...(target && {
      target: { ...target, met: target.bound === 'atLeast' ? ratio >= target.value : ratio <= target.value },
    }),
  }
}

function shuffled<T>(items: readonly T[]): T[] {
  const copy = [...items]
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[copy[i], copy[j]] = [copy[j] as T, copy[i] as T]
  }
  return copy
}
