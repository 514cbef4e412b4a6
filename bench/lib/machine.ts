import os from 'node:os'
import type { BenchServer } from './postgres.js'

export interface Machine {
  readonly cpu: string
  readonly cpus: number
  readonly os: string
  readonly node: string
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
    postgres: server.version,
    postgresSource: server.source,
    postgresSettings: server.settings,
  }
}
