import { readFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import type { BenchServer } from './postgres.js'

export interface Machine {
  readonly cpu: string
  readonly cpus: number
  readonly os: string
  readonly node: string
  /** The postgres.js Herald ran on (scripts/with-postgres-major.ts swaps the major). */
  readonly driver: string
  readonly postgres: string
  readonly postgresSource: BenchServer['source']
  readonly postgresSettings: BenchServer['settings']
}

export function describeMachine(server: BenchServer): Machine {
  const cpus = os.cpus()
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cpus: cpus.length,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    driver: `postgres.js ${driverVersion()}`,
    postgres: server.version,
    postgresSource: server.source,
    postgresSettings: server.settings,
  }
}

function driverVersion(): string {
  // postgres.js 4 does not export its package.json: read it where @herald/core resolves it.
  const manifest = join(
    import.meta.dirname,
    '..',
    '..',
    'packages',
    'core',
    'node_modules',
    'postgres',
    'package.json',
  )
  return (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version
}
