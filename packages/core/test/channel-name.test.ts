import { describe, expect, it } from 'vitest'
import { assertChannelName, quoteChannel } from '../src/channel-name.js'
import { codeOf } from './code-of.js'

describe('assertChannelName', () => {
  it.each([
    'orders',
    'cache_invalidation',
    'Orders.v2',
    'tenant:7/users',
    'ключ',
    '商品',
    '_x',
    'a'.repeat(63),
    'é'.repeat(31),
  ])('accepts %j', (name) => {
    expect(assertChannelName(name)).toBe(name)
  })

  it.each([
    ['', 'empty'],
    ['a'.repeat(64), '64 bytes'],
    ['é'.repeat(32), '64 bytes of two-byte characters'],
    ['orders"; drop table users; --', 'quote and semicolon'],
    ["o'rders", 'single quote'],
    ['with space', 'whitespace'],
    ['line\nbreak', 'newline'],
    ['nul\u0000byte', 'NUL'],
    ['back\\slash', 'backslash'],
    ['-leading-dash', 'leading separator'],
    ['emoji🎉', 'emoji (not a letter)'],
    ['\ud800', 'lone surrogate'],
  ])('refuses %j (%s) with INVALID_CHANNEL', (name) => {
    expect(codeOf(() => assertChannelName(name))).toBe('INVALID_CHANNEL')
  })

  it.each([undefined, null, 42, {}, ['orders']])('refuses the non-string %j', (name) => {
    expect(codeOf(() => assertChannelName(name))).toBe('INVALID_CHANNEL')
  })
})

describe('quoteChannel', () => {
  it('doubles quotes so an identifier cannot escape', () => {
    expect(quoteChannel('a"b')).toBe('"a""b"')
  })
})
