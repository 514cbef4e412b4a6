/**
 * What {@link once} needs. The `never` parameters let any emitter in, typed
 * ones included (eventemitter3's `EventEmitter<HeraldEvents>`, Node's): the
 * payload type comes from `once<T>` instead.
 */
export interface OnceEmitter {
  once(event: never, listener: never): unknown
  removeListener(event: never, listener: never): unknown
}

/** Options for {@link once}. */
export interface OnceOptions {
  /**
   * Reject after this many milliseconds.
   * @default 10_000
   */
  timeoutMs?: number
}

/**
 * The first payload of `event`. Unlike Node's `events.once` it does not reject
 * on `'error'`: a Herald emits background errors while it recovers, and tests
 * wait for the recovery.
 */
export function once<T = unknown>(
  emitter: OnceEmitter,
  event: string | symbol,
  options: OnceOptions = {},
): Promise<T> {
  const { timeoutMs = 10_000 } = options
  return new Promise<T>((resolve, reject) => {
    const listener = (payload: T): void => {
      clearTimeout(timer)
      resolve(payload)
    }
    const timer = setTimeout(() => {
      emitter.removeListener(event as never, listener as never)
      reject(new Error(`once: no '${String(event)}' event within ${timeoutMs} ms`))
    }, timeoutMs)
    emitter.once(event as never, listener as never)
  })
}
