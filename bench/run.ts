/**
 * `pnpm bench [name...]`: runs every benchmark (or the named ones) against one server,
 * prints the tables and writes bench/results/. Exits non-zero if any benchmark fails.
 */
import os from 'node:os'
import type { Benchmark, BenchmarkResult } from './lib/benchmark.js'
import { configPropagation } from './config-propagation.js'
import {
  commitContention,
  commitContentionDurable,
  commitContentionPipelined,
  commitSingleWriter,
} from './commit-contention.js'
import { fanout, fanoutThroughput } from './fanout.js'
import { describeMachine } from './lib/machine.js'
import { readOptions } from './lib/options.js'
import { benchServer } from './lib/postgres.js'
import { text, writeReport } from './lib/report.js'
import { lockRelease } from './lock-release.js'
import { lruGet } from './lru-get.js'
import { lruGetOrLoad } from './lru-get-or-load.js'
import { lruInvalidationThroughput } from './lru-invalidation-throughput.js'
import { lruMemory } from './lru-memory.js'
import { propagation } from './propagation.js'
import { triggerCost } from './trigger-cost.js'

const BENCHMARKS: readonly Benchmark[] = [
  propagation,
  lruGet,
  lruGetOrLoad,
  lruInvalidationThroughput,
  lruMemory,
  lockRelease,
  configPropagation,
  triggerCost,
  fanout,
  fanoutThroughput,
  commitContention,
  commitContentionPipelined,
  commitContentionDurable,
  commitSingleWriter,
]
async function main(): Promise<void> {
  const options = readOptions(process.env)
  const loadBefore = os.loadavg()[0] ?? 0
  const selected = select(process.argv.slice(2))
  await using server = await benchServer()
  const results: BenchmarkResult[] = []
  for (const benchmark of selected) {
    const context = { ...options, url: server.url }
    console.log(
      `${benchmark.name}: ${benchmark.plan(context)} (PostgreSQL ${server.version}, ${server.source})`,
    )
    results.push(await benchmark.run(context))
  }
  const report = {
    date: new Date().toISOString(),
    command: command(),
    machine: describeMachine(server),
    loadAverage: { before: loadBefore, after: os.loadavg()[0] ?? 0 },
    options,
    benchmarks: results,
  }
  process.stdout.write(text(report))
  const files = await writeReport(report)
  console.log(`wrote ${files.map((file) => file.slice(file.lastIndexOf('bench/'))).join(', ')}`)
}

/** `pnpm bench` with whatever BENCH_* variables and benchmark names this run was given. */
function command(): string {
  const variables = Object.entries(process.env)
    .filter(([name, value]) => name.startsWith('BENCH_') && value !== undefined && value !== '')
    .map(([name, value]) => `${name}=${value ?? ''}`)
  return [...variables.sort(), 'pnpm bench', ...process.argv.slice(2)].join(' ')
}

function select(names: readonly string[]): readonly Benchmark[] {
  if (names.length === 0) return BENCHMARKS
  const unknown = names.filter((name) => !BENCHMARKS.some((benchmark) => benchmark.name === name))
  if (unknown.length > 0) {
    throw new Error(
      `unknown benchmark ${unknown.join(', ')}; have ${BENCHMARKS.map((b) => b.name).join(', ')}`,
    )
  }
  return BENCHMARKS.filter((benchmark) => names.includes(benchmark.name))
}

// An explicit exit, once everything is closed: the figures are printed, and a socket or a
// timer some baseline library leaves behind must not keep the run alive.
main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error('bench failed:', error)
    process.exit(1)
  },
)
