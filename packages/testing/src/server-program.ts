import { spawn, type ChildProcess } from 'node:child_process'
import { basename } from 'node:path'
import type { PgLog } from './pg-log.js'
import type { Owner } from './postgres-owner.js'

/** How a server program ended: an exit code, a signal, or a failure to start at all. */
export interface ProgramExit {
  code: number | null
  signal: NodeJS.Signals | null
  error?: NodeJS.ErrnoException
}

/** A running initdb or postmaster, whose output goes to `log`. */
export interface ServerProgram {
  child: ChildProcess
  /** Settles once, never rejects: spawn failures are an exit with `error`. */
  exited: Promise<ProgramExit>
}

/**
 * Runs one of PostgreSQL's programs as `owner` (as root: the `postgres` account), with
 * English messages, since the harness waits for lines such as "ready to accept connections".
 */
export function runServerProgram(
  program: string,
  args: readonly string[],
  owner: Owner | undefined,
  log: PgLog,
): ServerProgram {
  const child = spawn(program, args, {
    ...(owner ?? {}),
    env: { ...process.env, LC_MESSAGES: 'C', LC_ALL: 'C' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout?.on('data', (chunk: Buffer) => log.write(chunk.toString('utf8')))
  child.stderr?.on('data', (chunk: Buffer) => log.write(chunk.toString('utf8')))
  const exited = new Promise<ProgramExit>((resolve) => {
    child.once('error', (error: NodeJS.ErrnoException) => resolve({ code: null, signal: null, error }))
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
  return { child, exited }
}

/** One sentence on why a program is gone, with what to do when the cause is the machine's. */
export function describeExit(program: string, exit: ProgramExit): string {
  const name = basename(program)
  if (exit.error) {
    const hint =
      exit.error.code === 'EACCES' || exit.error.code === 'ENOENT'
        ? ': the account running it must be able to reach and execute it (as root that is `postgres`); or set DATABASE_URL to a server of your own'
        : ''
    return `could not run ${program} (${exit.error.code ?? exit.error.message})${hint}`
  }
  return exit.signal
    ? `${name} was killed by ${exit.signal}`
    : `${name} exited with code ${String(exit.code)}`
}
