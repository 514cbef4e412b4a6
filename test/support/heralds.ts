import { Herald, type HeraldOptions, type MessageMeta } from '@herald/core'
import { waitFor } from '@herald/testing'
import { afterEach, expect } from 'vitest'

const open = new Set<Herald>()

/**
 * A Herald that the test file's afterEach checks was closed: a test that forgets `close()`
 * (or `await using`) fails instead of leaking a connection into the next test.
 */
export function newHerald(options: HeraldOptions): Herald {
  const herald = new Herald({ heartbeatMs: 2_000, ...options })
  open.add(herald)
  return herald
}

export async function startedHerald(options: HeraldOptions): Promise<Herald> {
  const herald = newHerald(options)
  await herald.start()
  return herald
}

afterEach(async () => {
  const leaked = [...open].filter((herald) => !herald.closed)
  open.clear()
  await Promise.all(leaked.map((herald) => herald.close()))
  expect(leaked.length, 'a Herald was left open by the test').toBe(0)
})

export interface Received<T> {
  readonly payload: T
  readonly meta: MessageMeta
}

/** Subscribes and records every message, with a wait for the n-th. */
export async function collect<T = unknown>(herald: Herald, channel: string) {
  const messages: Received<T>[] = []
  // An expression body on purpose: a handler's return value (here push's) must type-check.
  const subscription = await herald.subscribe<T>(channel, (payload, meta) => messages.push({ payload, meta }))
  return {
    messages,
    subscription,
    payloads: (): T[] => messages.map((message) => message.payload),
    count: (n: number, timeoutMs = 10_000) =>
      waitFor(() => messages.length >= n, {
        timeoutMs,
        message: `expected ${n} messages on ${channel}, have ${messages.length}`,
      }),
  }
}

/** Counts the errors a Herald emits, by code. */
export function errorsOf(herald: Herald) {
  const errors: { code: string; message: string }[] = []
  herald.on('error', (error) => errors.push({ code: error.code, message: error.message }))
  return errors
}
