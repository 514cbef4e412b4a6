import { EventEmitter } from 'eventemitter3'
import { describe, expect, it } from 'vitest'
import type { HeraldError } from '../src/errors.js'
import { safeEmit } from '../src/events.js'

describe('safeEmit', () => {
  it('runs every listener even when one throws, and reports the throw as an error event', () => {
    const emitter = new EventEmitter()
    const calls: string[] = []
    const errors: string[] = []
    emitter.on('error', (error: HeraldError) => errors.push(error.code))
    emitter.on('reconnected', () => calls.push('first'))
    emitter.on('reconnected', () => {
      throw new Error('app hook failed')
    })
    emitter.on('reconnected', () => calls.push('cache resync'))
    safeEmit(emitter, 'reconnected', { downtimeMs: 5 })
    expect(calls).toEqual(['first', 'cache resync'])
    expect(errors).toEqual(['HANDLER_FAILED'])
  })

  it('keeps once semantics and the listener context', () => {
    const emitter = new EventEmitter()
    const seen: unknown[] = []
    const context = { name: 'ctx' }
    emitter.once(
      'x',
      function (this: unknown, value: unknown) {
        seen.push([this, value])
      },
      context,
    )
    safeEmit(emitter, 'x', 1)
    safeEmit(emitter, 'x', 2)
    expect(seen).toEqual([[context, 1]])
    expect(emitter.listenerCount('x')).toBe(0)
  })

  it('does not loop when an error listener throws', () => {
    const emitter = new EventEmitter()
    emitter.on('error', () => {
      throw new Error('error listener failed')
    })
    emitter.on('x', () => {
      throw new Error('x failed')
    })
    expect(() => safeEmit(emitter, 'x')).not.toThrow()
  })
})
