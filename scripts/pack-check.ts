// Installs Herald as a user would: the packages are built and packed, the tarballs installed
// with the current postgres.js 4 into a fresh npm project outside the workspace (no
// --legacy-peer-deps), and then, from that project, every package is imported (ESM and
// require), every ```ts run block of the shipped READMEs is type-checked and run against a
// real server, and the CLI's bin answers --help and runs `migrate`.
//
//   node --import tsx scripts/pack-check.ts        (DATABASE_URL, or a throwaway server)
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import ts from 'typescript'
import { startPostgres } from '@herald/testing'

const root = join(import.meta.dirname, '..')
const PACKAGES = ['core', 'lru', 'config', 'lock', 'cli'] as const
// What the README examples import besides Herald and postgres.js.
const EXAMPLE_DEPENDENCIES = ['zod@^4']
const RELATIVE_LINK = /\]\((?!https?:|#|mailto:)([^)]+)\)/g

const failures: string[] = []
function check(ok: boolean, what: string): void {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`)
  if (!ok) failures.push(what)
}

function run(command: string, args: readonly string[], cwd: string, env?: NodeJS.ProcessEnv) {
  const result: SpawnSyncReturns<string> = spawnSync(command, args, {
    cwd,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 180_000,
  })
  return { status: result.status, output: `${result.stdout ?? ''}${result.stderr ?? ''}`.trim() }
}

const work = mkdtempSync(join(tmpdir(), 'herald-pack-check-'))
const tarballs = join(work, 'tarballs')
const app = join(work, 'app')
mkdirSync(tarballs)
mkdirSync(app)
const server = process.env['DATABASE_URL'] ? undefined : await startPostgres({ label: 'pack-check' })
const databaseUrl = process.env['DATABASE_URL'] ?? server!.url

try {
  console.log('::: build and pack')
  execFileSync('npx', ['-y', 'pnpm@10', 'build'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] })
  for (const name of PACKAGES) {
    execFileSync('npx', ['-y', 'pnpm@10', 'pack', '--pack-destination', tarballs], {
      cwd: join(root, 'packages', name),
      stdio: ['ignore', 'ignore', 'inherit'],
    })
  }
  const packed = readdirSync(tarballs).map((file) => join(tarballs, file))
  check(packed.length === PACKAGES.length, `${packed.length} tarballs: ${readdirSync(tarballs).join(', ')}`)

  console.log('::: a fresh npm project: the tarballs and postgres.js 4, no --legacy-peer-deps')
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'herald-pack-check', private: true, type: 'module' }, null, 2),
  )
  const installArgs = ['install', '--no-audit', '--no-fund', ...packed, 'postgres@4', ...EXAMPLE_DEPENDENCIES]
  const install = run('npm', installArgs, app)
  console.log(
    `$ npm ${installArgs.map((arg) => arg.replace(tarballs, '<tarballs>')).join(' ')}\n${install.output}`,
  )
  check(install.status === 0, 'npm install succeeds')
  if (install.status !== 0) throw new Error('nothing to check without an install')
  const installed = (name: string) =>
    JSON.parse(readFileSync(join(app, 'node_modules', name, 'package.json'), 'utf8')) as {
      name: string
      version: string
      dependencies?: Record<string, string>
    }
  check(
    installed('postgres').version.startsWith('4.'),
    `postgres.js ${installed('postgres').version} installed`,
  )
  const names = PACKAGES.map(
    (directory) =>
      (
        JSON.parse(readFileSync(join(root, 'packages', directory, 'package.json'), 'utf8')) as {
          name: string
        }
      ).name,
  )
  for (const name of names) {
    const manifest = installed(name)
    const workspaceRanges = Object.entries(manifest.dependencies ?? {}).filter(([, range]) =>
      range.startsWith('workspace:'),
    )
    check(
      workspaceRanges.length === 0,
      `${name}@${manifest.version}: no workspace: ranges in its dependencies`,
    )
    const readme = readFileSync(join(app, 'node_modules', name, 'README.md'), 'utf8')
    const relative = [...readme.matchAll(RELATIVE_LINK)].map((match) => match[1])
    check(
      relative.length === 0,
      `${name}: README links resolve on a registry page${relative.length ? ` (relative: ${relative.join(', ')})` : ''}`,
    )
  }

  console.log('::: every package loads, by import and by require')
  for (const name of names) {
    const imported = run(
      process.execPath,
      ['--input-type=module', '-e', `await import(${JSON.stringify(name)})`],
      app,
    )
    check(imported.status === 0, `import ${name}${imported.status === 0 ? '' : `: ${imported.output}`}`)
    const required = run(
      process.execPath,
      ['--input-type=commonjs', '-e', `require(${JSON.stringify(name)})`],
      app,
    )
    check(
      required.status === 0,
      `require ${name}${required.status === 0 ? '' : `: ${required.output.split('\n')[0]}`}`,
    )
  }

  console.log("::: the shipped READMEs' runnable examples: type-checked, then run")
  const examples: string[] = []
  for (const name of names) {
    const readme = readFileSync(join(app, 'node_modules', name, 'README.md'), 'utf8')
    let index = 0
    for (const match of readme.matchAll(/^```ts run\n([\s\S]*?)^```$/gm)) {
      const file = join(app, `${name.replace(/\W+/g, '_')}_${index++}.ts`)
      writeFileSync(file, match[1]!)
      examples.push(file)
    }
  }
  check(examples.length >= 4, `${examples.length} runnable README examples`)
  const program = ts.createProgram(examples, {
    strict: true,
    noUncheckedIndexedAccess: true,
    exactOptionalPropertyTypes: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2023,
    skipLibCheck: false,
    noEmit: true,
    types: ['node'],
    // @types/node is the workspace's: the user's project would have its own.
    typeRoots: [join(root, 'node_modules', '@types')],
  })
  const diagnostics = ts
    .getPreEmitDiagnostics(program)
    .map((diagnostic) => ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'))
  check(
    diagnostics.length === 0,
    `the examples type-check against the packed .d.ts and postgres.js 4${diagnostics.length ? `:\n${diagnostics.join('\n')}` : ''}`,
  )
  const tsx = import.meta.resolve('tsx')
  for (const file of examples) {
    const ran = run(process.execPath, ['--import', tsx, file], app, { DATABASE_URL: databaseUrl })
    check(ran.status === 0, `runs: ${file.slice(app.length + 1)}${ran.status === 0 ? '' : `\n${ran.output}`}`)
  }

  console.log("::: the CLI's bin")
  const bin = join(app, 'node_modules', '.bin', 'herald')
  const help = run(bin, ['--help'], app)
  check(help.status === 0 && help.output.startsWith('Usage: herald'), 'herald --help')
  const migrate = run(bin, ['migrate'], app, { DATABASE_URL: databaseUrl })
  check(migrate.status === 0, `herald migrate${migrate.status === 0 ? '' : `: ${migrate.output}`}`)
} finally {
  await server?.close()
  rmSync(work, { recursive: true, force: true })
}

if (failures.length > 0) {
  console.log(`\n${failures.length} check(s) failed`)
  process.exit(1)
}
console.log('\nevery check passed')
