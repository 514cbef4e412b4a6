import { HeraldError } from '@herald/core'

interface Slot {
  held: boolean
  readonly waiting: { resolve: () => void; reject: (error: unknown) => void }[]
}

export interface EnterOptions {
  signal?: AbortSignal | undefined
  timeoutMs?: number | undefined
}

/**
 * In-process exclusion per lock name, first come first served. Advisory locks are reentrant
 * within a session, and one session holds every lock of this process: without this queue,
 * two callers in one process would both "acquire" the same name.
 */
export class LocalQueue {
  readonly #slots = new Map<string, Slot>()

  /** Takes the slot if free; returns whether it did. */
  tryEnter(name: string): boolean {
    const slot = this.#slots.get(name)
    if (slot?.held === true) return false
    this.#slots.set(name, { held: true, waiting: slot?.waiting ?? [] })
    return true
  }

  /** Waits for the slot. Abort and timeout reject with `ABORTED` / `TIMEOUT` and leave no trace. */
  enter(name: string, options: EnterOptions = {}): Promise<void> {
    if (this.tryEnter(name)) return Promise.resolve()
    const slot = this.#slots.get(name) as Slot
    const { signal, timeoutMs } = options
    if (signal?.aborted === true) {
      return Promise.reject(
        new HeraldError('ABORTED', `acquire ${name} was aborted`, { cause: signal.reason }),
      )
    }
    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined
      const onAbort = (): void =>
        leave(new HeraldError('ABORTED', `acquire ${name} was aborted`, { cause: signal?.reason }))
      const cleanup = (): void => {
        if (timer !== undefined) clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
      }
      const entry = {
        resolve: () => {
          cleanup()
          resolve()
        },
        reject,
      }
      const leave = (error: HeraldError): void => {
        cleanup()
        const index = slot.waiting.indexOf(entry)
        if (index !== -1) slot.waiting.splice(index, 1)
        reject(error)
      }
      if (timeoutMs !== undefined) {
        timer = setTimeout(
          () => leave(new HeraldError('TIMEOUT', `acquire ${name} timed out after ${timeoutMs} ms`)),
          timeoutMs,
        )
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      slot.waiting.push(entry)
    })
  }

  /** Hands the slot to the next waiter, or frees it. */
  leave(name: string): void {
    const slot = this.#slots.get(name)
    if (slot === undefined) return
    const next = slot.waiting.shift()
    if (next !== undefined) {
      next.resolve()
      return
    }
    this.#slots.delete(name)
  }
}
