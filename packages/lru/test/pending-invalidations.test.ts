import { describe, expect, it } from 'vitest'
import { PendingInvalidations } from '../src/pending-invalidations.js'

function clock() {
  let now = 1_000
  return { now: () => now, advance: (ms: number) => (now += ms) }
}

describe('PendingInvalidations', () => {
  it('blocks keys, tags and everything until released', () => {
    const time = clock()
    const pending = new PendingInvalidations(60_000, time)
    pending.add('a', { keys: ['k1'] }, '100')
    pending.add('b', { tags: ['org:7'] }, '101')
    expect(pending.blocks('k1', [])).toBe(true)
    expect(pending.blocks('k2', [])).toBe(false)
    expect(pending.blocks('k2', ['org:7'])).toBe(true)
    pending.release('a')
    expect(pending.blocks('k1', [])).toBe(false)
    pending.add('c', { all: true }, undefined)
    expect(pending.blocks('anything', [])).toBe(true)
    pending.release('c')
    pending.release('b')
    expect(pending.size).toBe(0)
    expect(pending.blocks('k2', ['org:7'])).toBe(false)
  })

  it('counts overlapping invalidations of one key', () => {
    const pending = new PendingInvalidations(60_000, clock())
    pending.add('a', { keys: ['k'] }, '1')
    pending.add('b', { keys: ['k'] }, '2')
    pending.release('a')
    expect(pending.blocks('k', [])).toBe(true)
    pending.release('b')
    expect(pending.blocks('k', [])).toBe(false)
  })

  it('expires entries after the timeout (a rollback sends nothing)', () => {
    const time = clock()
    const pending = new PendingInvalidations(5_000, time)
    pending.add('a', { keys: ['k'] }, '1')
    time.advance(4_999)
    expect(pending.blocks('k', [])).toBe(true)
    time.advance(1)
    expect(pending.blocks('k', [])).toBe(false)
    expect(pending.size).toBe(0)
  })

  it('lists entries old enough to ask the server about', () => {
    const time = clock()
    const pending = new PendingInvalidations(60_000, time)
    pending.add('old', { keys: ['k'] }, '7')
    time.advance(2_000)
    pending.add('new', { keys: ['j'] }, '8')
    pending.add('unknown', { keys: ['i'] }, undefined)
    expect(pending.olderThan(1_000)).toEqual([['old', '7']])
    expect(pending.olderThan(0).map(([id]) => id)).toEqual(['old', 'new'])
  })
})
