import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export interface ExampleExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * An example's launcher as a real child process, run the way its `start` script runs it
 * (from the package directory, workspace packages from their sources), with our environment:
 * DATABASE_URL is the test run's shared server.
 */
export class ExampleRun {
  readonly exited: Promise<ExampleExit>
  readonly #child: ChildProcess
  #stdout = ''
  #stderr = ''
  readonly #listeners = new Set<() => void>()

  constructor(
    example: string,
    args: readonly string[] = [],
    env: NodeJS.ProcessEnv = {},
    killAfterMs = 30_000,
  ) {
    this.#child = spawn(
      process.execPath,
      ['--conditions=@herald/source', '--import', 'tsx', 'src/main.ts', ...args],
      {
        cwd: `${ROOT}examples/${example}`,
        env: { ...process.env, NO_COLOR: '1', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: killAfterMs,
      },
    )
    this.#child.stdout?.on('data', (chunk: Buffer) => {
      this.#stdout += chunk.toString('utf8')
      for (const listener of this.#listeners) listener()
    })
    this.#child.stderr?.on('data', (chunk: Buffer) => (this.#stderr += chunk.toString('utf8')))
    this.exited = new Promise((resolve, reject) => {
      this.#child.on('error', reject)
      this.#child.on('close', (code, signal) =>
        resolve({ code, signal, stdout: this.#stdout, stderr: this.#stderr }),
      )
    })
  }

  get stdout(): string {
    return this.#stdout
  }

  /** Resolves with the first match of `pattern` in stdout, waiting for it; rejects on exit or timeout. */
  waitForOutput(pattern: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const match = this.#stdout.match(pattern)
        if (match === null) return false
        cleanup()
        resolve(match)
        return true
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(
          new Error(
            `no ${String(pattern)} within ${timeoutMs} ms; stdout:\n${this.#stdout}\nstderr:\n${this.#stderr}`,
          ),
        )
      }, timeoutMs)
      const cleanup = (): void => {
        clearTimeout(timer)
        this.#listeners.delete(listener)
      }
      const listener = (): void => void check()
      if (check()) return
      this.#listeners.add(listener)
      void this.exited.then(() => {
        if (check()) return
        cleanup()
        reject(
          new Error(
            `exited before printing ${String(pattern)}; stdout:\n${this.#stdout}\nstderr:\n${this.#stderr}`,
          ),
        )
      })
    })
  }

  kill(signal: NodeJS.Signals): void {
    this.#child.kill(signal)
  }
}

/** Runs an example to the end. */
export function runExample(
  example: string,
  args: readonly string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<ExampleExit> {
  return new ExampleRun(example, args, env).exited
}
