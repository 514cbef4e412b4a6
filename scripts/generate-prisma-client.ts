// Generates the Prisma client the driver tests use (test/drivers/prisma/schema.prisma), at
// install time, so that both the type check and the tests see it.
//
// `prisma generate` insists on finding its schema engine, which it downloads on first use,
// although generating a client never runs it; offline that download fails. Unless the user
// points PRISMA_SCHEMA_ENGINE_BINARY at a real engine, a stand-in that exits 1 takes its place.
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const env: NodeJS.ProcessEnv = { ...process.env, PRISMA_HIDE_UPDATE_MESSAGE: '1', CHECKPOINT_DISABLE: '1' }
let standInDir: string | undefined
if (!env['PRISMA_SCHEMA_ENGINE_BINARY']) {
  standInDir = mkdtempSync(join(tmpdir(), 'herald-prisma-'))
  const standIn = join(standInDir, 'schema-engine')
  writeFileSync(standIn, '#!/bin/sh\nexit 1\n')
  chmodSync(standIn, 0o755)
  env['PRISMA_SCHEMA_ENGINE_BINARY'] = standIn
}
try {
  const result = spawnSync(
    process.execPath,
    [
      join(root, 'node_modules/prisma/build/index.js'),
      'generate',
      '--schema',
      'test/drivers/prisma/schema.prisma',
    ],
    { cwd: root, env, encoding: 'utf8' },
  )
  if (result.status !== 0) {
    process.stderr.write(result.stdout + result.stderr)
    process.stderr.write(
      'generate-prisma-client: `prisma generate` failed; the Prisma driver tests cannot run\n',
    )
    process.exit(1)
  }
} finally {
  if (standInDir) rmSync(standInDir, { recursive: true, force: true })
}
