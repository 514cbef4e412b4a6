import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { withTimeout } from './timeout.js'

interface Message {
  readonly type: string
}

/** A message a child sends when it cannot go on; `receive` rejects with it. */
interface Failure {
  readonly type: 'failed'
  readonly message: string
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
/** After asking a child to stop, how long it may take to close its connections and exit. */
const EXIT_TIMEOUT_MS = 10_000

/**
 * A TypeScript entry in its own Node process, spoken to over IPC. Its own process, not a
 * worker thread: a worker shares the event loop's host and the GC pauses of the publisher,
 * which is exactly the coupling a cross-instance latency figure must not have.
 */
export class Child<TSend extends Message, TReceive extends Message> {
  readonly #process: ChildProcess
  readonly #inbox: (TReceive | Failure)[] = []
  #wake: (() => void) | undefined
  #exited: Error | undefined
  #expectExit = false
  readonly #exit: Promise<void>
  #fail: (error: Error) => void = () => {}
  /**
   * Rejects as soon as the child reports a failure or exits unasked: race it against work
   * that waits on the child, so a dead receiver fails the run now, not at the next timeout.
   */
  readonly failure: Promise<never> = new Promise((_, reject) => {
    this.#fail = reject
  })

  /**
   * Spawns `entry` (relative to the repository root) with workspace sources and tsx, as
   * `pnpm bench` does, plus `nodeFlags` (`--expose-gc` for a child that measures the heap).
   */
  constructor(entry: string, nodeFlags: readonly string[] = []) {
    const flags = [...nodeFlags, '--conditions=@herald/source', '--import', 'tsx', entry]
    this.#process = spawn(process.execPath, flags, {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    this.failure.catch(() => {})
    this.#process.on('message', (message: TReceive | Failure) => {
      if (message.type === 'failed') this.#fail(new Error(`child failed: ${(message as Failure).message}`))
      this.#inbox.push(message)
      this.#wake?.()
    })
    this.#exit = new Promise((resolve) => {
      this.#process.on('exit', (code, signal) => {
        this.#exited = new Error(`${entry} exited (${signal ?? `code ${code ?? '?'}`})`)
        if (!this.#expectExit) this.#fail(this.#exited)
        this.#wake?.()
        resolve()
      })
      this.#process.on('error', (error) => {
        this.#exited = new Error(`${entry} could not run: ${error.message}`, { cause: error })
        this.#fail(this.#exited)
        this.#wake?.()
        resolve()
      })
    })
  }

  /** Sends `message`; with `{ last: true }` the child is expected to exit after it. */
  send(message: TSend, options: { last?: boolean } = {}): void {
    if (options.last === true) this.#expectExit = true
    this.#process.send(message)
  }

  /** The next message, which must be of `type`; a `failed` message or an exit rejects. */
  async receive<TType extends TReceive['type']>(
    type: TType,
    timeoutMs: number,
  ): Promise<Extract<TReceive, { type: TType }>> {
    const next = withTimeout(this.#next(), timeoutMs, `no '${type}' message from the child`)
    const message = await next
    if (message.type === 'failed') throw new Error(`child failed: ${(message as Failure).message}`)
    if (message.type !== type) throw new Error(`expected '${type}' from the child, got '${message.type}'`)
    return message as Extract<TReceive, { type: TType }>
  }

  /**
   * Waits for the child to exit by itself, and kills it if it has not within 10 s: a child
   * that lingers after closing everything has a handle left open, which is worth reporting.
   */
  async close(): Promise<'exited' | 'killed'> {
    if (this.#exited !== undefined) return 'exited'
    let killed = false
    const timer = setTimeout(() => {
      killed = true
      this.#process.kill('SIGKILL')
    }, EXIT_TIMEOUT_MS)
    await this.#exit
    clearTimeout(timer)
    return killed ? 'killed' : 'exited'
  }

  /** Ends the child at once, for a run that already failed. */
  async kill(): Promise<void> {
    if (this.#exited !== undefined) return
    this.#expectExit = true
    this.#process.kill('SIGTERM')
    await this.close()
  }

  async #next(): Promise<TReceive | Failure> {
    for (;;) {
      const message = this.#inbox.shift()
      if (message !== undefined) return message
      if (this.#exited !== undefined) throw this.#exited
      await new Promise<void>((resolve) => {
        this.#wake = resolve
      })
      this.#wake = undefined
    }
  }
}
