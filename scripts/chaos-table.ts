// Turns the JSON figures written by test/chaos (one file per case) into a markdown table.
// Run after `pnpm chaos` or `vitest run test/chaos`:
//   node --conditions=@herald/source --import tsx scripts/chaos-table.ts [results dir]
import { readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

interface Row {
  id: string
  long: boolean
  fault: string
  recoveryMs: number | null
  measured: string
  invariant: string
  result: 'held' | 'violated'
}

const dir = process.argv[2] ?? process.env['HERALD_CHAOS_RESULTS'] ?? join(tmpdir(), 'herald-chaos-results')
const order = [
  'restart',
  'terminate',
  'sigstop',
  'lock-sigkill',
  'tx-kill',
  'max-connections',
  'hostile-notify',
]
const rows = readdirSync(dir)
  .filter((file) => file.endsWith('.json'))
  .map((file) => JSON.parse(readFileSync(join(dir, file), 'utf8')) as Row)
  .sort((a, b) => (order.indexOf(a.id) + 1 || 99) - (order.indexOf(b.id) + 1 || 99))

const cell = (text: string) => text.replaceAll('|', '\\|')
const lines = [
  '| fault / input class | recovery | measured | invariant | held |',
  '|---|---:|---|---|---|',
  ...rows.map(
    (row) =>
      `| ${cell(row.fault)} | ${row.recoveryMs === null ? '—' : `${row.recoveryMs} ms`} | ${cell(row.measured)} | ${cell(row.invariant)} | ${row.result === 'held' ? 'yes' : '**no**'} |`,
  ),
]
console.log(lines.join('\n'))
