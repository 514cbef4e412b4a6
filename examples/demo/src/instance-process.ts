import { spawn, type ChildProcess } from 'node:child_process'
import type { Command, InstanceName, Report, ReportOf, ReportType } from './protocol.js'

/** A report as the narrator received it, with when it arrived (ms since the demo started). */
export interface Arrived<TReport extends Report = Report> {
  readonly report: TReport
  readonly at: number
}

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface SpawnOptions {
  readonly name: InstanceName
  readonly script: string
  /** Where `--import tsx` is resolved from. */
  readonly cwd: string
  readonly env: NodeJS.ProcessEnv
  /** The narrator's clock, to stamp arrivals. */
  readonly now: () => number
  /** Called for every report as it arrives, before any waiter sees it. */
  readonly onReport?: (arrived: Arrived) => void
}

interface Waiter {
  readonly accepts: (report: Report) => boolean
  readonly resolve: (arrived: Arrived) => void
  readonly reject: (error: Error) => void
}

/** Lines of a child's stderr kept for the failure message. */
const STDERR_TAIL_CHARS = 2_000

/**
 * The narrator's handle on one instance process: sends commands, and waits for reports.
 * Reports nobody waits for yet are kept, so a wait started after its report arrived still
 * sees it: the order of IPC messages and of the narrator's awaits never races.
 */
export class InstanceProcess {
  readonly name: InstanceName
  readonly #child: ChildProcess
  readonly #now: () => number
  readonly #backlog: Arrived[] = []
  readonly #waiters = new Set<Waiter>()
  readonly exited: Promise<Exit>
  #exit: Exit | undefined
  #failure: Error | undefined
  #closing = false
  #stderr = ''

  constructor(options: SpawnOptions) {
    this.name = options.name
    this.#now = options.now
    this.#child = spawn(
      process.execPath,
      ['--conditions=@herald/source', '--import', 'tsx', options.script],
      { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] },
    )
    // Kept quiet: shown only if the instance fails.
    this.#child.stdout?.on('data', (chunk: Buffer) => this.#keep(chunk))
    this.#child.stderr?.on('data', (chunk: Buffer) => this.#keep(chunk))
    this.#child.on('message', (report: Report) => {
      const arrived: Arrived = { report, at: this.#now() }
      options.onReport?.(arrived)
      if (report.type === 'failed') this.#fail(new Error(`instance ${this.name} failed: ${report.message}`))
      for (const waiter of this.#waiters) {
        if (waiter.accepts(report)) {
          this.#waiters.delete(waiter)
          waiter.resolve(arrived)
          return
        }
      }
      this.#backlog.push(arrived)
    })
    this.exited = new Promise((resolve) => {
      this.#child.on('exit', (code, signal) => {
        this.#exit = { code, signal }
        resolve(this.#exit)
      })
      this.#child.on('error', (error) => {
        this.#fail(
          new Error(`instance ${this.name} could not be started: ${error.message}`, { cause: error }),
        )
        this.#exit ??= { code: null, signal: null }
        resolve(this.#exit)
      })
    })
    void this.exited.then((exit) => {
      const how = this.#closing ? 'exited' : 'exited unexpectedly'
      this.#fail(new Error(`instance ${this.name} ${how} (${describeExit(exit)})${this.stderrTail()}`))
    })
  }

  get pid(): number | undefined {
    return this.#child.pid
  }

  get running(): boolean {
    return this.#exit === undefined
  }

  send(command: Command): void {
    if (!this.#child.connected) throw new Error(`instance ${this.name} is not connected`)
    this.#child.send(command)
  }

  /**
   * The first report of `type` (matching `match`) not yet taken, waiting for it if needed.
   * Rejects when `signal` aborts (its reason, a step timeout, names what was awaited) or the
   * instance exits or fails first. `label` says which one, in that error.
   */
  next<TType extends ReportType>(
    type: TType,
    signal: AbortSignal,
    match: (report: ReportOf<TType>) => boolean = () => true,
    label?: string,
  ): Promise<Arrived<ReportOf<TType>>> {
    const accepts = (report: Report): boolean => report.type === type && match(report as ReportOf<TType>)
    const index = this.#backlog.findIndex((arrived) => accepts(arrived.report))
    if (index >= 0) {
      const [arrived] = this.#backlog.splice(index, 1)
      return Promise.resolve(arrived as Arrived<ReportOf<TType>>)
    }
    if (this.#failure !== undefined) return Promise.reject(this.#failure)
    const what = `${this.name} to report "${type}"${label === undefined ? '' : ` (${label})`}`
    if (signal.aborted) return Promise.reject(abortError(signal, what))
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.#waiters.delete(waiter)
        reject(abortError(signal, what))
      }
      const waiter: Waiter = {
        accepts,
        resolve: (arrived) => {
          signal.removeEventListener('abort', onAbort)
          resolve(arrived as Arrived<ReportOf<TType>>)
        },
        reject: (error) => {
          signal.removeEventListener('abort', onAbort)
          reject(error)
        },
      }
      this.#waiters.add(waiter)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** Every report of `type` not yet taken, oldest first. */
  takeAll<TType extends ReportType>(type: TType): Arrived<ReportOf<TType>>[] {
    const taken: Arrived<ReportOf<TType>>[] = []
    for (let i = 0; i < this.#backlog.length;) {
      const arrived = this.#backlog[i] as Arrived
      if (arrived.report.type === type) {
        taken.push(arrived as Arrived<ReportOf<TType>>)
        this.#backlog.splice(i, 1)
      } else i++
    }
    return taken
  }

  /** Ends the process at once (only when it did not close when asked). */
  kill(): void {
    if (this.running) this.#child.kill('SIGKILL')
  }

  stderrTail(): string {
    const tail = this.#stderr.trim()
    return tail === '' ? '' : `\n--- output of instance ${this.name} ---\n${tail}`
  }

  /** Asks the instance to close its Herald and exit; it reports `closed` first. */
  close(): void {
    this.#closing = true
    this.send({ type: 'close' })
  }

  #keep(chunk: Buffer): void {
    this.#stderr = (this.#stderr + chunk.toString('utf8')).slice(-STDERR_TAIL_CHARS)
  }

  #fail(error: Error): void {
    if (this.#failure !== undefined) return
    this.#failure = error
    for (const waiter of this.#waiters) waiter.reject(error)
    this.#waiters.clear()
  }
}

export function describeExit(exit: Exit): string {
  if (exit.signal !== null) return `killed by ${exit.signal}`
  return `exit code ${exit.code ?? 'unknown'}`
}

function abortError(signal: AbortSignal, what: string): Error {
  const reason: unknown = signal.reason
  const text = reason instanceof Error ? reason.message : 'aborted'
  return new Error(`${text} waiting for ${what}`, { cause: reason })
}
