import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { waitFor } from '@herald/testing'
import { afterEach } from 'vitest'

/** The repository root: `--import tsx` and the bin path resolve from it. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BIN = 'packages/cli/src/bin.ts'
/** Starting tsx and compiling the CLI takes a second or two on a loaded machine. */
const DEFAULT_TIMEOUT_MS = 30_000

export interface CliResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export interface RunningCli {
  readonly child: ChildProcess
  /** Everything written so far. */
  stdout(): string
  stderr(): string
  /** Resolves when the process has exited. */
  readonly exited: Promise<CliResult>
  /** Waits until stderr (or stdout) contains `text`. */
  waitForOutput(text: string, stream?: 'stdout' | 'stderr', timeoutMs?: number): Promise<void>
}

const running = new Set<ChildProcess>()

afterEach(() => {
  // A test that failed half-way must not leave a `herald listen` behind.
  for (const child of running) child.kill('SIGKILL')
  running.clear()
})

/**
 * Starts the real `herald` binary — the bin entry, as `node --conditions=@herald/source
 * --import tsx`, in a child process — with `env` on top of a clean environment (no
 * DATABASE_URL unless given).
 */
export function startCli(args: readonly string[], env: Record<string, string> = {}): RunningCli {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => name !== 'DATABASE_URL' && !name.startsWith('PG')),
  )
  const child = spawn(process.execPath, ['--conditions=@herald/source', '--import', 'tsx', BIN, ...args], {
    cwd: ROOT,
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  running.add(child)
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const exited = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => {
      running.delete(child)
      resolve({ code, signal, stdout, stderr })
    })
  })
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    waitForOutput: async (text, stream = 'stderr', timeoutMs = DEFAULT_TIMEOUT_MS) => {
      const output = () => (stream === 'stderr' ? stderr : stdout)
      await Promise.race([
        waitFor(() => output().includes(text), {
          timeoutMs,
          intervalMs: 20,
          message: `herald ${args.join(' ')}: no ${JSON.stringify(text)} on ${stream}`,
        }),
        exited.then((result) => {
          if (!output().includes(text)) {
            throw new Error(
              `herald exited (${result.code}) before printing ${JSON.stringify(text)}: ${stderr}`,
            )
          }
        }),
      ])
    },
  }
}

/** Runs `herald <args>` to completion. */
export async function cli(
  args: readonly string[],
  env: Record<string, string> = {},
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<CliResult> {
  const started = startCli(args, env)
  const timer = setTimeout(() => started.child.kill('SIGKILL'), timeoutMs)
  try {
    return await started.exited
  } finally {
    clearTimeout(timer)
  }
}
