import { describe, expect, it } from 'vitest'
import { TagIndex } from '../src/tag-index.js'

describe('TagIndex', () => {
  it('finds keys by any of several tags, and forgets removed or retagged keys', () => {
    const index = new TagIndex()
    index.set('u1', ['org:1', 'team:a'])
    index.set('u2', ['org:1'])
    index.set('u3', ['org:2'])
    expect(index.keysOf(['org:1']).sort()).toEqual(['u1', 'u2'])
    expect(index.keysOf(['team:a', 'org:2']).sort()).toEqual(['u1', 'u3'])
    index.set('u1', ['org:2'])
    expect(index.keysOf(['org:1'])).toEqual(['u2'])
    index.remove('u2')
    expect(index.keysOf(['org:1'])).toEqual([])
    index.set('u3', [])
    expect(index.keysOf(['org:2'])).toEqual(['u1'])
    expect(index.size).toBe(1)
    index.clear()
    expect(index.size).toBe(0)
  })
})
