// Runs a command with every package of the workspace resolving `postgres` to another major of
// postgres.js, then puts the workspace back as it was.
//
//   node --import tsx scripts/with-postgres-major.ts 4 -- npx -y pnpm@10 test
//
// The override is a real install (pnpm `overrides`), not a module alias: child processes the
// tests spawn, ORMs' adapters and the packages' own imports all see the same copy.
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const RANGES: Record<string, string> = { '3': '^3.4.9', '4': '^4.2.0' }

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const [major, separator, ...command] = process.argv.slice(2)
const range = major === undefined ? undefined : RANGES[major]
if (range === undefined || separator !== '--' || command.length === 0) {
  console.error(`usage: with-postgres-major.ts <${Object.keys(RANGES).join('|')}> -- <command...>`)
  process.exit(2)
}

const files = ['pnpm-workspace.yaml', 'pnpm-lock.yaml'].map((name) => join(root, name))
const originals = files.map((file) => readFileSync(file, 'utf8'))

function pnpm(...args: string[]): number {
  return run(['npx', '-y', 'pnpm@10', ...args])
}

function run([program, ...args]: string[]): number {
  const result = spawnSync(program!, args, { cwd: root, stdio: 'inherit' })
  if (result.error) throw result.error
  return result.status ?? 1
}

function restore(): void {
  files.forEach((file, i) => writeFileSync(file, originals[i]!))
}

/** The copy @herald/core resolves (postgres.js 4 does not export its package.json). */
function installedVersion(): string {
  const manifest = join(root, 'packages/core/node_modules/postgres/package.json')
  return (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version
}

// Ctrl-C reaches the child too; this process stays to put the workspace back.
process.on('SIGINT', () => {})
process.on('SIGTERM', () => {})

let status = 1
try {
  writeFileSync(files[0]!, `${originals[0]!.trimEnd()}\n\noverrides:\n  postgres: '${range}'\n`)
  if (pnpm('install', '--no-frozen-lockfile') !== 0) throw new Error(`installing postgres ${range} failed`)
  console.log(`::: postgres.js ${installedVersion()} in place of the default`)
  status = run(command)
} finally {
  restore()
  // The lockfile is the committed one again; the store still holds both majors, so this is quick.
  if (pnpm('install', '--frozen-lockfile') !== 0) status = status || 1
  console.log(`::: postgres.js ${installedVersion()} restored`)
}
process.exit(status)
