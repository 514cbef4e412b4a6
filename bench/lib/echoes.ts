/**
 * The publisher's side of a ping: one echo expected at a time, timestamped the moment its
 * handler runs, before anything else the handler might do.
 */
export class Echoes {
  #waiting: { seq: number; resolve: (at: number) => void; reject: (error: Error) => void } | undefined
  #stray: Error | undefined

  /** Resolves with `performance.now()` at the arrival of echo `seq`. */
  expect(seq: number): Promise<number> {
    if (this.#stray !== undefined) return Promise.reject(this.#stray)
    return new Promise((resolve, reject) => {
      this.#waiting = { seq, resolve, reject }
    })
  }

  /** Called by the echo handler. */
  arrive(seq: number): void {
    const at = performance.now()
    const waiting = this.#waiting
    this.#waiting = undefined
    if (waiting?.seq === seq) return waiting.resolve(at)
    // A duplicate or out-of-order echo means the run measured something else than it thinks.
    const error = new Error(
      `echo ${seq} arrived while ${waiting === undefined ? 'none was expected' : `waiting for ${waiting.seq}`}`,
    )
    this.#stray ??= error
    waiting?.reject(error)
  }
}
