/**
 * The awaited hit path: `await cache.getOrLoad(key, loader)` against an awaited bare
 * lru-cache `get` (the floor for any promise-returning lookup) and against bentocache's
 * `getOrSet` on its in-memory driver, the closest product to Herald's cache.
 */
import type { Benchmark, BenchContext, RepeatedResult } from './lib/benchmark.js'
import { measureInChildren } from './lib/measure-child.js'
import { compare, figures, type Measured } from './lib/repetitions.js'
import { BENTO_SHARE, KEYS, LOOKUPS, QUICK_LOOKUPS } from './lru-get-or-load-plan.js'

const CHILD = 'bench/lru-get-or-load-child.ts'
/** Rounds each process throws away first: the timed loops reach their top JIT tier. */
const DISCARD = 2
/** The targets: at least half an awaited bare get, and ahead of bentocache. */
const TARGET_RATIO_BARE = 0.5
const TARGET_RATIO_BENTO = 1
const TIMEOUT_MS = 600_000

type Id = 'herald' | 'bare' | 'bento' | 'bentoSerialized'

export const lruGetOrLoad: Benchmark = {
  name: 'lru-get-or-load',
  plan: (context) => {
    const lookups = context.quick ? QUICK_LOOKUPS : LOOKUPS
    return (
      `${context.repetitions} repetitions per contender, each in a fresh child process after ${DISCARD} discarded, ` +
      `${lookups.toLocaleString('en-US')} lookups each (bentocache ${(lookups / BENTO_SHARE).toLocaleString('en-US')})`
    )
  },
  run,
}

async function run(context: BenchContext): Promise<RepeatedResult> {
  const report = await measureInChildren(CHILD, context, {
    discard: DISCARD,
    timeoutMs: TIMEOUT_MS,
    sum: ['heraldHits', 'heraldMisses', 'heraldLoads', 'loaderCalls'],
  })
  const measured: Measured<Id> = {
    herald: report.measured['herald'] ?? [],
    bare: report.measured['bare'] ?? [],
    bento: report.measured['bento'] ?? [],
    bentoSerialized: report.measured['bentoSerialized'] ?? [],
  }
  return {
    kind: 'repeated',
    name: 'lru-get-or-load',
    title: 'Awaited cache hit: getOrLoad against an awaited lru-cache get and bentocache getOrSet',
    method:
      `${KEYS.toLocaleString('en-US')} entries ({ id, name, email } under "user:<id>") in each cache, max ${KEYS.toLocaleString('en-US')} ` +
      '(bentocache: memory driver only, maxItems the same, no L2, no bus); one repetition times a loop of ' +
      'awaited lookups, one at a time, every one a hit, over a precomputed pseudo-random sequence of the keys, ' +
      `the same for all (bentocache runs 1/${BENTO_SHARE} as many per round: it is that much slower); ` +
      'lookups/s. Each repetition is a fresh child process ' +
      `(${DISCARD} rounds discarded, then one kept, contenders in random order), as for lru-get.`,
    unit: { name: 'ops/s', better: 'higher' },
    repetitions: measured.herald.length,
    discarded: DISCARD,
    contenders: [
      {
        id: 'herald',
        name: 'Herald',
        label: 'Herald: await cache.getOrLoad(key, loader)',
        figures: figures(measured.herald),
      },
      {
        id: 'bare',
        name: 'awaited lru-cache',
        label: 'lru-cache 11: await lru.get(key)',
        figures: figures(measured.bare),
      },
      {
        id: 'bento',
        name: 'bentocache',
        label: 'bentocache 1.6: await getOrSet, serialize: false',
        figures: figures(measured.bento),
      },
      {
        id: 'bentoSerialized',
        name: 'bentocache (serialized)',
        label: 'bentocache 1.6: await getOrSet, default serialize',
        figures: figures(measured.bentoSerialized),
      },
    ],
    comparisons: [
      compare(measured, 'herald', 'bare', { bound: 'atLeast', value: TARGET_RATIO_BARE }),
      compare(measured, 'herald', 'bento', { bound: 'atLeast', value: TARGET_RATIO_BENTO }),
      compare(measured, 'herald', 'bentoSerialized'),
    ],
    checks: report.checks,
  }
}
