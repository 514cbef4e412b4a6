import { describe, expect, it } from 'vitest'
import { Heartbeat } from '../src/heartbeat.js'
import type { Clock, TimerHandle } from '../src/clock.js'

/** A clock the test advances by hand. */
function manualClock() {
  let now = 0
  let nextId = 0
  const timers = new Map<number, { at: number; callback: () => void }>()
  const clock: Clock = {
    now: () => now,
    setTimeout(callback, delayMs) {
      const id = nextId++
      timers.set(id, { at: now + delayMs, callback })
      return id as unknown as TimerHandle
    },
    clearTimeout(handle) {
      timers.delete(handle as unknown as number)
    },
  }
  async function advance(ms: number): Promise<void> {
    const until = now + ms
    for (;;) {
      const due = [...timers.entries()].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0]
      if (due === undefined) break
      timers.delete(due[0])
      now = due[1].at
      due[1].callback()
      await new Promise((resolve) => setImmediate(resolve))
    }
    now = until
  }
  return { clock, advance, pending: () => timers.size }
}

describe('Heartbeat', () => {
  it('beats while probes answer and declares the connection dead within heartbeatMs of its last answer', async () => {
    const { clock, advance, pending } = manualClock()
    let answering = true
    const beats: number[] = []
    let deadAt: number | undefined
    const heartbeat = new Heartbeat({
      intervalMs: 500,
      timeoutMs: 500,
      clock,
      probe: () => (answering ? Promise.resolve() : new Promise<void>(() => {})),
      onBeat: (rtt) => beats.push(rtt),
      onDead: () => (deadAt = clock.now()),
    })
    heartbeat.start()
    await advance(2_000)
    expect(beats.length).toBe(4)
    const lastAnswer = clock.now()
    answering = false
    await advance(2_000)
    expect(deadAt).toBeDefined()
    expect((deadAt as number) - lastAnswer).toBeLessThanOrEqual(1_000)
    expect(pending()).toBe(0)
  })

  it('declares the connection dead when the probe fails, and stop() leaves no timer', async () => {
    const { clock, advance, pending } = manualClock()
    const errors: string[] = []
    const heartbeat = new Heartbeat({
      intervalMs: 100,
      timeoutMs: 100,
      clock,
      probe: () => Promise.reject(new Error('socket closed')),
      onBeat: () => {},
      onDead: (error) => errors.push(error.code),
    })
    heartbeat.start()
    await advance(150)
    expect(errors).toEqual(['CONNECTION_FAILED'])
    heartbeat.stop()
    expect(pending()).toBe(0)
  })
})
