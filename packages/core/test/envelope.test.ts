import { describe, expect, it } from 'vitest'
import { decodeEnvelope, encodeEnvelope, envelopeOverheadBytes, serializeBody } from '../src/envelope.js'
import { HeraldError } from '../src/errors.js'
import { codeOf } from './code-of.js'

describe('envelope', () => {
  it('round-trips one body and a coalesced batch', () => {
    const one = encodeEnvelope('abc', 'message', [serializeBody({ id: 42 })])
    expect(decodeEnvelope(one)).toEqual({ origin: 'abc', kind: 'message', bodies: [{ id: 42 }] })
    const batch = encodeEnvelope('abc', 'inv', ['1', '"two"', 'null', '[3]'])
    expect(decodeEnvelope(batch)).toEqual({ origin: 'abc', kind: 'inv', bodies: [1, 'two', null, [3]] })
  })

  it('carries a null body, which is a value and not an absence', () => {
    expect(decodeEnvelope(encodeEnvelope('o', 'message', ['null'])).bodies).toEqual([null])
  })

  it('is what SQL can produce with json_build_object', () => {
    expect(decodeEnvelope('{"v": 1, "o": "sql", "k": "message", "b": {"id": 1}}')).toEqual({
      origin: 'sql',
      kind: 'message',
      bodies: [{ id: 1 }],
    })
  })

  it('counts its overhead in bytes', () => {
    const overhead = envelopeOverheadBytes('origin', 'kind')
    const text = encodeEnvelope('origin', 'kind', ['1', '2'])
    expect(Buffer.byteLength(text)).toBe(overhead + 2)
  })

  it.each([
    ['not json', 'hello'],
    ['a number', '42'],
    ['an array', '[1]'],
    ['no version', '{"o":"x","k":"message","b":1}'],
    ['a future version', '{"v":2,"o":"x","k":"message","b":1}'],
    ['no origin', '{"v":1,"k":"message","b":1}'],
    ['a bad kind', '{"v":1,"o":"x","k":"white space","b":1}'],
    ['no body', '{"v":1,"o":"x","k":"message"}'],
    ['an empty batch', '{"v":1,"o":"x","k":"message","bs":[]}'],
  ])('refuses %s with PAYLOAD_INVALID', (_, text) => {
    expect(codeOf(() => decodeEnvelope(text))).toBe('PAYLOAD_INVALID')
  })

  it('keeps an excerpt of a refused payload, not all of it', () => {
    try {
      decodeEnvelope('x'.repeat(10_000))
      expect.unreachable()
    } catch (error) {
      expect((error as HeraldError).details['excerpt']).toHaveLength(201)
    }
  })
})

describe('serializeBody', () => {
  it.each([
    ['undefined', undefined],
    ['a function', () => 1],
    ['a symbol', Symbol('s')],
    ['a bigint', 10n],
  ])('refuses %s with PAYLOAD_INVALID', (_, value) => {
    expect(codeOf(() => serializeBody(value))).toBe('PAYLOAD_INVALID')
  })

  it('refuses a cycle with PAYLOAD_INVALID', () => {
    const cycle: Record<string, unknown> = {}
    cycle['self'] = cycle
    expect(codeOf(() => serializeBody(cycle))).toBe('PAYLOAD_INVALID')
  })

  it('escapes lone surrogates so the text stays valid UTF-8', () => {
    expect(serializeBody('\ud800')).toBe('"\\ud800"')
  })
})
