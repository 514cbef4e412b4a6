/**
 * A benchmark whose contenders all run in one fresh child process: its figures do not depend
 * on what ran before it in `pnpm bench` (JIT feedback, heap, open connections), and a heap
 * measurement gets a process with `--expose-gc` and nothing else in it.
 */
import type { BenchContext } from './benchmark.js'
import { Child } from './child.js'

export interface MeasureRequest {
  readonly type: 'start'
  readonly url: string
  readonly repetitions: number
  readonly discard: number
  readonly quick: boolean
}

/** Each contender's figure per kept repetition, and the counters that prove the run sound. */
export interface MeasureReport {
  readonly type: 'done'
  readonly measured: Record<string, number[]>
  readonly checks: Record<string, number>
}

type FromMeasurer = MeasureReport | { readonly type: 'failed'; readonly message: string }

export interface ChildOptions {
  /** Rounds the child runs and throws away before those it keeps. */
  readonly discard: number
  /** Per child process. */
  readonly timeoutMs: number
  readonly nodeFlags?: readonly string[]
}

/** Runs `entry` (a file that calls `serveMeasurement`) for every repetition, and returns what it measured. */
export function measureInChild(
  entry: string,
  context: BenchContext,
  options: ChildOptions,
): Promise<MeasureReport> {
  return runChild(entry, context, context.repetitions, options)
}

/**
 * Runs `entry` once per repetition, each time in a fresh process that keeps one round after
 * `discard`. For hit paths that take tens of nanoseconds, which JIT tier and inlining a
 * process settles into moves the figures by up to ±20% from one process to the next while
 * repetitions within a process agree to a few per cent: only fresh processes sample that.
 * Figures are concatenated in process order; checks listed in `sum` are added up, the others
 * (sizes, counts per repetition) are the same in every process and kept as the largest.
 */
export async function measureInChildren(
  entry: string,
  context: BenchContext,
  options: ChildOptions & { readonly sum: readonly string[] },
): Promise<MeasureReport> {
  const measured: Record<string, number[]> = {}
  const checks: Record<string, number> = {}
  for (let repetition = 0; repetition < context.repetitions; repetition++) {
    const report = await runChild(entry, context, 1, options)
    for (const [id, values] of Object.entries(report.measured)) (measured[id] ??= []).push(...values)
    for (const [name, value] of Object.entries(report.checks)) {
      const previous = checks[name]
      checks[name] =
        previous === undefined
          ? value
          : options.sum.includes(name)
            ? previous + value
            : Math.max(previous, value)
    }
  }
  return { type: 'done', measured, checks: { ...checks, processes: context.repetitions } }
}

async function runChild(
  entry: string,
  context: BenchContext,
  repetitions: number,
  options: ChildOptions,
): Promise<MeasureReport> {
  const child = new Child<MeasureRequest, FromMeasurer>(entry, options.nodeFlags)
  try {
    child.send(
      {
        type: 'start',
        url: context.url,
        repetitions,
        discard: options.discard,
        quick: context.quick,
      },
      { last: true },
    )
    return await child.receive('done', options.timeoutMs)
  } catch (error) {
    await child.kill()
    throw error
  } finally {
    if ((await child.close()) === 'killed') {
      console.warn(`${entry} did not exit after reporting; it was killed`)
    }
  }
}

/**
 * The child's side: waits for the request, runs `measure`, reports, and leaves the process
 * to exit by itself once `measure` has closed everything it opened.
 */
export function serveMeasurement(
  measure: (request: MeasureRequest) => Promise<Omit<MeasureReport, 'type'>>,
): void {
  const send = (message: FromMeasurer): void => {
    process.send?.(message, () => process.disconnect())
  }
  process.once('message', (request: MeasureRequest) => {
    measure(request).then(
      (report) => send({ type: 'done', ...report }),
      (error: unknown) => {
        process.exitCode = 1
        send({
          type: 'failed',
          message: error instanceof Error ? (error.stack ?? error.message) : String(error),
        })
      },
    )
  })
}
