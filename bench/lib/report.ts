import { mkdir, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type {
  BenchmarkResult,
  BenchOptions,
  Comparison,
  LatencyResult,
  RatioComparison,
  RepeatedResult,
} from './benchmark.js'
import type { Machine } from './machine.js'
import type { Summary } from './stats.js'

export interface Report {
  /** ISO 8601, when the run finished. */
  readonly date: string
  /** The command line that reproduces this run. */
  readonly command: string
  readonly machine: Machine
  /**
   * 1-minute load average when the run started and ended: above the CPU count, other
   * processes competed for the CPUs and the figures (the tails above all) are noise.
   */
  readonly loadAverage: { readonly before: number; readonly after: number }
  readonly options: BenchOptions
  readonly benchmarks: readonly BenchmarkResult[]
}

const RESULTS = fileURLToPath(new URL('../results/', import.meta.url))
const COLUMNS = ['p50', 'p90', 'p99', 'mean'] as const satisfies readonly (keyof Summary)[]
const WIDTH = 9
const REPEATED_COLUMNS = ['median', 'min', 'max'] as const
/** Rates in the tens of millions, with separators. */
const REPEATED_WIDTH = 14

/**
 * Writes `latest.json` and `latest.md` (`latest-postgres4.*` on postgres.js 4); a quick run writes `quick.tmp.*` instead (ignored
 * by git), so a smoke test never overwrites the figures that get published.
 */
export async function writeReport(report: Report): Promise<string[]> {
  await mkdir(RESULTS, { recursive: true })
  // The figures on postgres.js 4 sit beside the default's, so the two can be compared.
  const major = report.machine.driver.startsWith('postgres.js 4') ? '-postgres4' : ''
  const base = `${RESULTS}${report.options.quick ? `quick${major}.tmp` : `latest${major}`}`
  await writeFile(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`)
  await writeFile(`${base}.md`, markdown(report))
  return [`${base}.json`, `${base}.md`]
}

/** The tables for a terminal. */
export function text(report: Report): string {
  const lines: string[] = []
  for (const result of report.benchmarks) {
    if (result.kind === 'repeated') {
      lines.push(...repeatedText(result, report.options))
      continue
    }
    const width = Math.max(...result.contenders.map((contender) => contender.label.length), 24)
    const row = (label: string, cells: readonly string[]): string =>
      `  ${label.padEnd(width)}${cells.map((cell) => cell.padStart(WIDTH)).join('')}`
    lines.push('', `${result.name}: ${result.title}, in ms`, `  ${result.method}`, '')
    lines.push(row('', COLUMNS))
    for (const { label, summary } of result.contenders) {
      lines.push(
        row(
          label,
          COLUMNS.map((column) => ms(summary[column])),
        ),
      )
    }
    for (const comparison of result.comparisons) {
      lines.push(row(ratioName(result, comparison), [ratio(comparison.p50), '', ratio(comparison.p99)]))
    }
    lines.push('', `  ${samplesLine(result, report.options)}`)
    for (const comparison of result.comparisons) {
      const verdict = targetLine(result, comparison)
      if (verdict !== undefined) lines.push(`  ${verdict}`)
    }
  }
  lines.push('', `${machineLine(report.machine)}; ${loadLine(report)}`, '')
  return lines.join('\n')
}

function markdown(report: Report): string {
  const lines: string[] = []
  for (const result of report.benchmarks) {
    if (result.kind === 'repeated') {
      lines.push(...repeatedMarkdown(result, report.options))
      continue
    }
    lines.push(`### ${result.title}`, '')
    lines.push(`| | ${COLUMNS.join(' | ')} |`, `|---|${COLUMNS.map(() => '--:').join('|')}|`)
    for (const { label, summary } of result.contenders) {
      lines.push(`| ${label} | ${COLUMNS.map((column) => `${ms(summary[column])} ms`).join(' | ')} |`)
    }
    for (const comparison of result.comparisons) {
      const cells = [ratio(comparison.p50), '', ratio(comparison.p99), ''].map((cell) =>
        cell ? `**${cell}**` : '',
      )
      lines.push(`| **${ratioName(result, comparison)}** | ${cells.join(' | ')} |`)
    }
    lines.push('', `${result.method} ${samplesLine(result, report.options)}`)
    for (const comparison of result.comparisons) {
      const verdict = targetLine(result, comparison)
      if (verdict !== undefined) lines.push(verdict)
    }
    lines.push('')
  }
  lines.push(
    `${machineLine(report.machine)}; ${loadLine(report)}; ${report.date.slice(0, 10)}. ` +
      `Reproduce with \`${report.command}\`.`,
    '',
  )
  return lines.join('\n')
}

function repeatedText(result: RepeatedResult, options: BenchOptions): string[] {
  const labels = [
    ...result.contenders.map((contender) => contender.label),
    ...result.comparisons.map((comparison) => ratioName(result, comparison)),
  ]
  const width = Math.max(...labels.map((label) => label.length), 24)
  const row = (label: string, cells: readonly string[]): string =>
    `  ${label.padEnd(width)}${cells.map((cell) => cell.padStart(REPEATED_WIDTH)).join('')}`
  const lines = ['', `${result.name}: ${result.title}, in ${result.unit.name}`, `  ${result.method}`, '']
  lines.push(row('', REPEATED_COLUMNS))
  for (const { label, figures } of result.contenders) {
    lines.push(
      row(
        label,
        [figures.median, figures.min, figures.max].map((value) => amount(value)),
      ),
    )
  }
  for (const comparison of result.comparisons) {
    lines.push(
      row(
        ratioName(result, comparison),
        [comparison.median, comparison.min, comparison.max].map((value) => ratio(value)),
      ),
    )
  }
  lines.push('', `  ${repetitionsLine(result, options)}`)
  for (const finding of result.findings ?? []) lines.push(`  ${finding}`)
  for (const comparison of result.comparisons) {
    const verdict = ratioTargetLine(result, comparison)
    if (verdict !== undefined) lines.push(`  ${verdict}`)
  }
  return lines
}

function repeatedMarkdown(result: RepeatedResult, options: BenchOptions): string[] {
  const lines = [`### ${result.title}`, '']
  lines.push(
    `| ${result.unit.name} | ${REPEATED_COLUMNS.join(' | ')} |`,
    `|---|${REPEATED_COLUMNS.map(() => '--:').join('|')}|`,
  )
  for (const { label, figures } of result.contenders) {
    lines.push(`| ${label} | ${[figures.median, figures.min, figures.max].map(amount).join(' | ')} |`)
  }
  for (const comparison of result.comparisons) {
    const cells = [comparison.median, comparison.min, comparison.max].map((value) => `**${ratio(value)}**`)
    lines.push(`| **${ratioName(result, comparison)}** | ${cells.join(' | ')} |`)
  }
  lines.push('', `${result.method} ${repetitionsLine(result, options)}`)
  for (const finding of result.findings ?? []) lines.push('', finding)
  for (const comparison of result.comparisons) {
    const verdict = ratioTargetLine(result, comparison)
    if (verdict !== undefined) lines.push(verdict)
  }
  lines.push('')
  return lines
}

function repetitionsLine(result: RepeatedResult, options: BenchOptions): string {
  const quick = options.quick ? ' Quick run: not for publishing.' : ''
  return (
    `Median of ${result.repetitions} repetitions per contender after ${result.discarded} discarded, ` +
    `contenders in a fresh random order each repetition; ratios are paired by repetition ` +
    `(median, min, max of the per-repetition ratios); ${result.unit.better} is better.${quick}`
  )
}

function ratioTargetLine(result: RepeatedResult, comparison: RatioComparison): string | undefined {
  if (comparison.target === undefined) return undefined
  const { bound, value, met } = comparison.target
  const of = nameOf(result, comparison.of)
  const to = nameOf(result, comparison.to)
  return (
    `Target: ${of} ${bound === 'atLeast' ? '≥' : '≤'} ${value}× ${to}: ` +
    `${met ? 'met' : 'MISSED'} (${ratio(comparison.median)}).`
  )
}

function nameOf(result: BenchmarkResult, id: string): string {
  return (result.contenders as readonly { id: string; name: string }[]).find((c) => c.id === id)?.name ?? id
}

function ratioName(result: BenchmarkResult, comparison: Comparison | RatioComparison): string {
  return `${nameOf(result, comparison.of)} / ${nameOf(result, comparison.to)}`
}

function targetLine(result: LatencyResult, comparison: Comparison): string | undefined {
  if (comparison.target === undefined) return undefined
  const { maxP50Ratio, met } = comparison.target
  const of = nameOf(result, comparison.of)
  const to = nameOf(result, comparison.to)
  return `Target: ${of} p50 within ${maxP50Ratio}× ${to}: ${met ? 'met' : 'MISSED'}.`
}

function samplesLine(result: LatencyResult, options: BenchOptions): string {
  const quick = options.quick ? ' Quick run: not for publishing.' : ''
  const counts = result.contenders.map((contender) => ({
    name: contender.name,
    samples: contender.summary.samples,
    discarded: contender.discarded ?? options.warmup,
  }))
  const [first] = counts
  if (counts.every((count) => count.samples === first?.samples && count.discarded === first.discarded)) {
    return `${thousands(first?.samples ?? 0)} samples per contender after ${thousands(first?.discarded ?? 0)} discarded.${quick}`
  }
  const each = counts.map(
    (count) => `${thousands(count.samples)} for ${count.name} after ${thousands(count.discarded)} discarded`,
  )
  return `Samples: ${each.join(', ')}.${quick}`
}

function machineLine(machine: Machine): string {
  const settings = Object.entries(machine.postgresSettings)
    .map(([name, value]) => `${name}=${value}`)
    .join(', ')
  return (
    `${machine.cpu} × ${machine.cpus}, ${machine.os}, Node ${machine.node}, ${machine.driver}, ` +
    `PostgreSQL ${machine.postgres} (${machine.postgresSource}, ${settings})`
  )
}

function loadLine(report: Report): string {
  const { before, after } = report.loadAverage
  const busy = Math.max(before, after) > report.machine.cpus ? ' (busy machine: noisy figures)' : ''
  return `load average ${before.toFixed(1)} → ${after.toFixed(1)}${busy}`
}

function thousands(value: number): string {
  return value.toLocaleString('en-US')
}

function ms(value: number): string {
  return value.toFixed(3)
}

function ratio(value: number): string {
  return `${value.toFixed(2)}×`
}

/** Whole numbers with separators; below 100, two decimals. */
function amount(value: number): string {
  return value >= 100 ? thousands(Math.round(value)) : value.toFixed(2)
}
