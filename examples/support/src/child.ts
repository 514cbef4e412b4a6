import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/**
 * One instance, a separate Node process running `script` from its TypeScript source. Its
 * output lines are echoed, prefixed with its name, and kept so the launcher can wait for one.
 */
export class Child {
  readonly name: string
  readonly exited: Promise<Exit>
  readonly #process: ChildProcess
  readonly #lines: string[] = []
  readonly #waiters = new Set<() => void>()
  #exit: Exit | undefined

  /**
   * `script` is a file URL, e.g. `new URL('./server.ts', import.meta.url)`; the child runs in its
   * directory, from which `--import tsx` resolves. With `ipc`, `send` reaches the child's
   * `process.on('message')`.
   */
  constructor(name: string, script: URL, env: NodeJS.ProcessEnv, { ipc = false } = {}) {
    this.name = name
    this.#process = spawn(
      process.execPath,
      ['--conditions=@herald/source', '--import', 'tsx', fileURLToPath(script)],
      {
        cwd: fileURLToPath(new URL('.', script)),
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe', ...(ipc ? (['ipc'] as const) : [])],
      },
    )
    for (const stream of [this.#process.stdout, this.#process.stderr]) {
      let partial = ''
      stream?.on('data', (chunk: Buffer) => {
        const lines = (partial + chunk.toString('utf8')).split('\n')
        partial = lines.pop() ?? ''
        for (const line of lines) this.#line(line)
      })
    }
    this.exited = new Promise((resolve) => {
      this.#process.on('exit', (code, signal) => {
        this.#exit = { code, signal }
        for (const wake of this.#waiters) wake()
        resolve(this.#exit)
      })
    })
  }

  /** Sends a message over the IPC channel (started with `ipc`). */
  send(message: unknown): void {
    this.#process.send?.(message as object)
  }

  /** How many lines it has printed so far: pass it to `waitForLine` to wait for a newer one. */
  mark(): number {
    return this.#lines.length
  }

  /** Whether any line it printed matches `pattern`. */
  printed(pattern: RegExp): boolean {
    return this.#lines.some((line) => pattern.test(line))
  }

  /** The first line at or after `since` matching `pattern`; rejects after `timeoutMs` or if the process exits. */
  async waitForLine(pattern: RegExp, { since = 0, timeoutMs = 10_000 } = {}): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      for (let index = since; index < this.#lines.length; index++) {
        const match = (this.#lines[index] as string).match(pattern)
        if (match !== null) return match
      }
      since = this.#lines.length
      if (this.#exit !== undefined) throw new Error(`${this.name} exited before printing ${String(pattern)}`)
      const remaining = deadline - Date.now()
      if (remaining <= 0)
        throw new Error(`${this.name} did not print ${String(pattern)} within ${timeoutMs} ms`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(wake, remaining)
        function wake(): void {
          clearTimeout(timer)
          waiters.delete(wake)
          resolve()
        }
        const waiters = this.#waiters
        waiters.add(wake)
      })
    }
  }

  /** Asks it to shut down (SIGTERM) and waits for it to exit; SIGKILL after `timeoutMs`. */
  async stop(timeoutMs = 5_000): Promise<Exit> {
    if (this.#exit !== undefined) return this.#exit
    this.#process.kill('SIGTERM')
    const timer = setTimeout(() => this.#process.kill('SIGKILL'), timeoutMs)
    try {
      return await this.exited
    } finally {
      clearTimeout(timer)
    }
  }

  #line(line: string): void {
    this.#lines.push(line)
    process.stdout.write(`  [${this.name}] ${line}\n`)
    for (const wake of this.#waiters) wake()
  }
}
