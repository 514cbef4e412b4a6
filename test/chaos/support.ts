import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Herald } from '@herald/core'
import { waitFor, type PgServer } from '@herald/testing'
import { afterAll, afterEach, beforeAll, expect } from 'vitest'

/** `pnpm chaos` sets this: more rounds, longer outages. */
export const LONG = process.env['HERALD_CHAOS_LONG'] === '1'

export function rounds(short: number, long: number): number {
  return LONG ? long : short
}

/** Where each case writes its figures; `scripts/chaos-table.ts` reads them. */
export const RESULTS_DIR = process.env['HERALD_CHAOS_RESULTS'] ?? join(tmpdir(), 'herald-chaos-results')

/** One measured line of the reliability table. */
export interface ChaosResult {
  /** The fault or input class. */
  readonly fault: string
  /** From the fault's injection (or its end, where stated in `measured`) to the first message delivered after it. */
  readonly recoveryMs: number | null
  /** What the recovery time measures. */
  readonly measured: string
  /** The invariant checked. */
  readonly invariant: string
  readonly result: 'held' | 'violated'
  readonly details?: Record<string, unknown>
}

/** Writes one case's figures as JSON under {@link RESULTS_DIR} and prints them. */
export function report(id: string, result: ChaosResult): void {
  mkdirSync(RESULTS_DIR, { recursive: true })
  const file = join(RESULTS_DIR, `${id}.json`)
  writeFileSync(
    file,
    `${JSON.stringify({ id, long: LONG, at: new Date().toISOString(), ...result }, null, 2)}\n`,
  )
  console.log(`[chaos] ${id}: ${JSON.stringify(result)}`)
}

/**
 * Fails the test in which an unhandled rejection happened (vitest reports them too, but
 * after the fact and for the whole run).
 */
export function failOnUnhandledRejection(): void {
  const seen: unknown[] = []
  const listener = (reason: unknown) => void seen.push(reason)
  beforeAll(() => void process.on('unhandledRejection', listener))
  afterAll(() => void process.off('unhandledRejection', listener))
  afterEach(() => {
    const reasons = seen.splice(0)
    expect(reasons.map(String), 'unhandled rejections').toEqual([])
  })
}

/** Open client backends whose application_name starts with `prefix`. */
export async function connectionsOf(server: PgServer, prefix: string): Promise<number> {
  const [row] = await server.sql<{ n: number }[]>`
    select count(*)::int as n from pg_stat_activity where application_name like ${`${prefix}%`}`
  return row?.n ?? 0
}

/** Waits until no backend of `prefix` is left: anything else is a leaked connection. */
export async function expectNoConnections(server: PgServer, prefix: string): Promise<void> {
  await waitFor(async () => (await connectionsOf(server, prefix)) === 0, {
    timeoutMs: 5_000,
    message: `connections of ${prefix} left open`,
  })
}

/** Active timers (Timeout handles) in this process. */
export function activeTimers(): number {
  return process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length
}

/** Waits until the process has no more timers than `baseline`: anything else is a leaked timer. */
export async function expectNoTimers(baseline: number): Promise<void> {
  // waitFor keeps one timer of its own while it runs the check.
  await waitFor(() => activeTimers() - 1 <= baseline, {
    timeoutMs: 3_000,
    message: `timers left behind (baseline ${baseline}, now ${activeTimers()})`,
  })
}

/**
 * Measures recovery end to end: publishes a probe from `from` every 25 ms until `to` receives
 * one sent at or after `since`; resolves with the delay from `since` to that receipt.
 */
export async function probeRecovery(
  from: Herald,
  to: Herald,
  channel: string,
  since: number,
  timeoutMs = 20_000,
): Promise<number> {
  let receivedAt: number | undefined
  const subscription = await to.subscribe<{ sentAt: number }>(channel, (payload) => {
    if (receivedAt === undefined && payload.sentAt >= since) receivedAt = Date.now()
  })
  const deadline = Date.now() + timeoutMs
  try {
    while (receivedAt === undefined) {
      if (Date.now() > deadline) throw new Error(`no probe on ${channel} within ${timeoutMs} ms`)
      from.publish(channel, { sentAt: Date.now() }).catch(() => {})
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    return receivedAt - since
  } finally {
    await subscription.unsubscribe()
  }
}

/** Where the chaos children live, and the repository root they run from. */
export const CHILDREN = join(dirname(fileURLToPath(import.meta.url)), 'children')
export const ROOT = join(CHILDREN, '..', '..', '..')

/** A child process running `test/chaos/children/<script>`, with its stdout lines. */
export class Child {
  readonly process: ChildProcess
  readonly lines: string[] = []
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  stderr = ''

  constructor(script: string, args: string[]) {
    this.process = spawn(
      process.execPath,
      ['--conditions=@herald/source', '--import', 'tsx', join(CHILDREN, script), ...args],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    let buffered = ''
    this.process.stdout?.setEncoding('utf8').on('data', (data: string) => {
      buffered += data
      const parts = buffered.split('\n')
      buffered = parts.pop() ?? ''
      this.lines.push(...parts)
    })
    this.process.stderr?.setEncoding('utf8').on('data', (data: string) => (this.stderr += data))
    this.exited = new Promise((resolve) =>
      this.process.once('exit', (code, signal) => resolve({ code, signal })),
    )
  }

  /** The first stdout line starting with `prefix`, without it. */
  line(prefix: string, timeoutMs = 20_000): Promise<string> {
    return waitFor<string | false>(
      () => this.lines.find((line) => line.startsWith(prefix))?.slice(prefix.length) ?? false,
      {
        timeoutMs,
        message: `child never printed "${prefix}" (stderr: ${this.stderr.slice(-500)})`,
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
