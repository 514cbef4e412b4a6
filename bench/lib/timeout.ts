/** Rejects with `message` unless `promise` settles within `ms`; the timer never holds the process open. */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} (after ${ms} ms)`)), ms)
    timer.unref()
  })
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer))
}
