/**
 * Memory per entry: 100,000 small entries in an InvalidatingCache against a bare lru-cache
 * with the same max, and with tags (one or two per entry) for what the tag index costs.
 */
import type { Benchmark, BenchContext, RepeatedResult } from './lib/benchmark.js'
import { measureInChild } from './lib/measure-child.js'
import { compare, figures, type Measured } from './lib/repetitions.js'
import { CONTENDERS, ENTRIES, type MemoryContender } from './lru-memory-plan.js'

const CHILD = 'bench/lru-memory-child.ts'
/** The first round also pays for one-off allocations (JIT code, the first LISTEN). */
const DISCARD = 1
/** The target: at most 1.25× the heap of bare lru-cache. */
const TARGET_RATIO = 1.25
const TIMEOUT_MS = 300_000

export const lruMemory: Benchmark = {
  name: 'lru-memory',
  plan: (context) =>
    `${context.repetitions} repetitions per contender after ${DISCARD} discarded, ` +
    `${ENTRIES.toLocaleString('en-US')} entries each, in a child process with --expose-gc`,
  run,
}

async function run(context: BenchContext): Promise<RepeatedResult> {
  const report = await measureInChild(CHILD, context, {
    discard: DISCARD,
    timeoutMs: TIMEOUT_MS,
    nodeFlags: ['--expose-gc'],
  })
  const measured = Object.fromEntries(
    CONTENDERS.map((id) => [id, report.measured[id] ?? []]),
  ) as Measured<MemoryContender>
  const perEntry = Object.fromEntries(CONTENDERS.map((id) => [id, figures(measured[id]).median])) as Record<
    MemoryContender,
    number
  >
  const entries = ENTRIES.toLocaleString('en-US')
  return {
    kind: 'repeated',
    name: 'lru-memory',
    title: `Memory: ${entries} entries in an InvalidatingCache against bare lru-cache`,
    method:
      `${entries} entries ({ id, name, email } values under "user:<id>" keys, created as they are set), max ${entries}; ` +
      'a figure is heap used plus ArrayBuffer memory (process.memoryUsage(), after two gc() passes) once the ' +
      'cache is filled, minus the same before it was created, per entry; one child process started with ' +
      '--expose-gc, its Herald started once. "With tags": one or two tags per entry (an organization shared by ' +
      '100 entries, a team shared by 10). "Keys and values alone": the same keys and values in two arrays.',
    unit: { name: 'bytes/entry', better: 'lower' },
    repetitions: measured.herald.length,
    discarded: DISCARD,
    contenders: [
      { id: 'herald', name: 'Herald', label: 'Herald: InvalidatingCache', figures: figures(measured.herald) },
      { id: 'bare', name: 'lru-cache', label: 'lru-cache 11: LRUCache', figures: figures(measured.bare) },
      {
        id: 'heraldTags',
        name: 'Herald with tags',
        label: 'Herald: InvalidatingCache, 1–2 tags per entry',
        figures: figures(measured.heraldTags),
      },
      {
        id: 'data',
        name: 'keys and values',
        label: 'Keys and values alone, in two arrays',
        figures: figures(measured.data),
      },
    ],
    comparisons: [
      compare(measured, 'herald', 'bare', { bound: 'atMost', value: TARGET_RATIO }),
      compare(measured, 'heraldTags', 'bare'),
    ],
    checks: {
      ...report.checks,
      // What each structure adds to the keys and values it holds, in bytes per entry (medians).
      bareOverheadPerEntry: Math.round(perEntry.bare - perEntry.data),
      heraldOverheadPerEntry: Math.round(perEntry.herald - perEntry.data),
      heraldTagsOverheadPerEntry: Math.round(perEntry.heraldTags - perEntry.data),
    },
  }
}
