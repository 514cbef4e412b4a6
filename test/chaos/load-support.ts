import { CHILDREN, ROOT } from './support.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { waitFor } from '@herald/testing'

/** What a load instance (children/load-instance.ts) reports over IPC. */
export type LoadChildMessage =
  | { type: 'ready'; index: number; preset: number; notStored: number }
  | { type: 'published'; index: number; sent: number; retries: number; publishMs: number }
  | ({ type: 'result' } & LoadFigures)

export interface LoadFigures {
  readonly index: number
  /** Distinct keys of the other processes in the durable log at the end. */
  readonly sentByOthers: number
  /** Evicted here by a live NOTIFY. */
  readonly delivered: number
  /** Evicted here by a read of the durable log (replay after a gap, or a poll). */
  readonly recovered: number
  /** sentByOthers − delivered − recovered. */
  readonly lost: number
  readonly lostSample: readonly string[]
  readonly unexpected: number
  readonly invalidationsReceived: number
  readonly replayedRows: number
  readonly flushes: number
  readonly flushEvents: number
  readonly replays: number
  readonly replayEventRows: number
  readonly otherEvictions: Record<string, number>
  readonly errors: readonly string[]
  readonly unhandled: readonly string[]
  readonly finalWaitMs: number
}

export type LoadParentMessage = { type: 'go' } | { type: 'finish' }

/** A child process with an IPC channel, running `test/chaos/children/<script>`. */
export class IpcChild {
  readonly process: ChildProcess
  readonly messages: LoadChildMessage[] = []
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  stderr = ''

  constructor(script: string, args: string[]) {
    this.process = spawn(
      process.execPath,
      ['--conditions=@herald/source', '--import', 'tsx', join(CHILDREN, script), ...args],
      { cwd: ROOT, stdio: ['ignore', 'inherit', 'pipe', 'ipc'] },
    )
    this.process.on('message', (message: LoadChildMessage) => void this.messages.push(message))
    this.process.stderr?.setEncoding('utf8').on('data', (data: string) => (this.stderr += data))
    this.exited = new Promise((resolve) =>
      this.process.once('exit', (code, signal) => resolve({ code, signal })),
    )
  }

  send(message: LoadParentMessage): void {
    this.process.send(message)
  }

  /** The first message of `type`. */
  message<T extends LoadChildMessage['type']>(
    type: T,
    timeoutMs: number,
  ): Promise<Extract<LoadChildMessage, { type: T }>> {
    return waitFor(
      () =>
        (this.messages.find((message) => message.type === type) as
          Extract<LoadChildMessage, { type: T }> | undefined) ?? false,
      {
        timeoutMs,
        message: `child never sent "${type}" (exit ${this.process.exitCode ?? this.process.signalCode}, stderr: ${this.stderr.slice(-800)})`,
      },
    )
  }

  async kill(): Promise<void> {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill('SIGKILL')
    await this.exited
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill()
  }
}
