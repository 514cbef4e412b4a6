import { LOG_ENV } from './pg-constants.js'

/**
 * Keeps the tail of a server's output for error messages and echoes it to
 * stderr only when HERALD_PG_LOG=1: fault tests make Postgres log a FATAL per
 * killed connection, which would bury the test report.
 */
export class PgLog {
  #chunks: string[] = []
  #prefix: string
  #waiters: { text: string; resolve: () => void }[] = []

  constructor(prefix: string) {
    this.#prefix = prefix
  }

  write = (message: unknown): void => {
    const text = message instanceof Error ? (message.stack ?? message.message) : String(message)
    const previous = this.#chunks.at(-1) ?? ''
    this.#chunks.push(text)
    if (this.#chunks.length > 40) this.#chunks.shift()
    // A line may arrive split over two chunks of a pipe.
    const recent = previous.slice(-200) + text
    this.#waiters = this.#waiters.filter((waiter) => {
      if (!recent.includes(waiter.text)) return true
      waiter.resolve()
      return false
    })
    if (process.env[LOG_ENV] !== '1') return
    const lines = text.replace(/\n$/, '').split('\n')
    process.stderr.write(lines.map((line) => `[${this.#prefix}] ${line}\n`).join(''))
  }

  includes(text: string): boolean {
    return this.#chunks.some((chunk) => chunk.includes(text))
  }

  /** Resolves when a later chunk of output contains `text`. */
  waitFor(text: string): Promise<void> {
    return new Promise((resolve) => this.#waiters.push({ text, resolve }))
  }

  tail(): string {
    return this.#chunks.join('').slice(-4000)
  }

  clear(): void {
    this.#chunks = []
  }
}
