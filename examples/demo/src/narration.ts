/**
 * The demo's terminal output: one line per event, stamped with the time since the demo
 * started, colored only when stdout is a terminal (and NO_COLOR is unset).
 */
const color = process.stdout.isTTY === true && process.env['NO_COLOR'] === undefined

function paint(open: number, close: number): (text: string) => string {
  return (text) => (color ? `\u001b[${open}m${text}\u001b[${close}m` : text)
}

export const bold = paint(1, 22)
export const dim = paint(2, 22)
export const red = paint(31, 39)
export const green = paint(32, 39)
export const yellow = paint(33, 39)
export const cyan = paint(36, 39)

export const OK = green('✓')
export const FAILED = red('✗')
export const SKIPPED = dim('–')

/** Width of a stamp such as `+12.345s`, so that the text column lines up. */
const STAMP_WIDTH = 8

export class Narration {
  readonly #startedAt = performance.now()

  /** Milliseconds since the demo started. */
  now(): number {
    return performance.now() - this.#startedAt
  }

  /** A line with no stamp (titles, the final verdict). */
  plain(text = ''): void {
    process.stdout.write(`${text}\n`)
  }

  /** A step heading. */
  step(number: number, title: string): void {
    this.#write(this.now(), bold(`${number}. ${title}`))
  }

  /** A detail line under a step; `at` is when the event happened, if earlier than now. */
  detail(text: string, at = this.now()): void {
    this.#write(at, `   ${text}`)
  }

  /** A detail line without a stamp, aligned with the stamped ones. */
  note(text: string): void {
    process.stdout.write(`${' '.repeat(STAMP_WIDTH)}     ${text}\n`)
  }

  #write(at: number, text: string): void {
    process.stdout.write(`${dim(`+${(at / 1000).toFixed(3)}s`.padStart(STAMP_WIDTH))}  ${text}\n`)
  }
}

/** `842 µs` under a millisecond, `12.3 ms` above. */
export function formatLatency(microseconds: number): string {
  if (microseconds < 1_000) return `${Math.max(0, microseconds)} µs`
  return `${(microseconds / 1_000).toFixed(microseconds < 10_000 ? 2 : 1)} ms`
}

export function formatMs(ms: number): string {
  return `${Math.round(ms)} ms`
}
