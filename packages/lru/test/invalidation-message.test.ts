import { describe, expect, it } from 'vitest'
import { decodeInvalidation, encodeInvalidation } from '../src/invalidation-message.js'

describe('invalidation message', () => {
  it('round-trips keys, tags, flush, a pending id and a log reference', () => {
    const body = encodeInvalidation({
      cache: 'users',
      instance: 'c1',
      keys: ['user:1'],
      tags: ['org:7'],
      flush: true,
      pendingId: 'abc',
      logRef: { id: '12', tx: '900' },
    })
    expect(body).toEqual({
      c: 'users',
      i: 'c1',
      k: ['user:1'],
      t: ['org:7'],
      f: 1,
      p: 'abc',
      l: ['12', '900'],
    })
    expect(decodeInvalidation(body, 'users')).toEqual({
      cache: 'users',
      instance: 'c1',
      keys: ['user:1'],
      tags: ['org:7'],
      flush: true,
      pendingId: 'abc',
      logRef: { id: '12', tx: '900' },
    })
  })

  it('ignores messages for another cache', () => {
    expect(decodeInvalidation({ c: 'orders', k: ['x'] }, 'users')).toBeUndefined()
  })

  it.each([
    ['not an object', 'users'],
    ['no cache name', { k: ['x'] }],
    ['nothing to do', { c: 'users' }],
    ['non-string keys', { c: 'users', k: [1] }],
    ['keys not a list', { c: 'users', k: 'x' }],
    ['a bad log reference', { c: 'users', k: ['x'], l: ['1; drop', '2'] }],
    ['a non-string pending id', { c: 'users', k: ['x'], p: 5 }],
  ])('refuses %s with PAYLOAD_INVALID', (_, body) => {
    expect(() => decodeInvalidation(body, 'users')).toThrow(
      expect.objectContaining({ code: 'PAYLOAD_INVALID' }),
    )
  })
})
