import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { assertChannelName, MAX_CHANNEL_BYTES } from '../src/channel-name.js'
import { HeraldError } from '../src/errors.js'

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((unit) => String.fromCharCode(unit))
const nastyChar = fc.oneof(
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
  fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 }),
  loneSurrogate,
  fc.constantFrom('"', "'", ' ', '\t', '\n', '\u0000', '\u00a0', '\u2028', ';', '\\', '_', 'é', '字', '😀'),
)
const candidate = fc.oneof(
  fc.string({ unit: nastyChar, maxLength: 80 }),
  fc.stringMatching(/^[a-z_][a-z0-9_.:$/-]{0,70}$/),
)

function outcome(value: unknown): 'accepted' | 'refused' {
  try {
    expect(assertChannelName(value)).toBe(value)
    return 'accepted'
  } catch (error) {
    expect(error).toBeInstanceOf(HeraldError)
    expect((error as HeraldError).code).toBe('INVALID_CHANNEL')
    return 'refused'
  }
}

describe('channel names (property-based)', () => {
  it('never accepts a name over 63 bytes or with quotes, whitespace or control characters', () => {
    fc.assert(
      fc.property(candidate, (name) => {
        if (outcome(name) === 'refused') return
        expect(Buffer.byteLength(name, 'utf8')).toBeLessThanOrEqual(MAX_CHANNEL_BYTES)
        expect(name.length).toBeGreaterThan(0)
        expect(/["'\s\p{Cc}\p{Cs}\\;]/u.test(name)).toBe(false)
      }),
      { numRuns: 2_000 },
    )
  })

  it('throws nothing but HeraldError INVALID_CHANNEL for any value, strings or not', () => {
    fc.assert(
      fc.property(
        fc.anything({ withBigInt: true, withMap: true, withSet: true }),
        (value) => void outcome(value),
      ),
    )
  })

  it('is consistent: asking twice gives the same answer (its memo cannot be poisoned)', () => {
    fc.assert(
      fc.property(fc.array(candidate, { maxLength: 30 }), (names) => {
        const first = names.map(outcome)
        expect(names.map(outcome)).toEqual(first)
      }),
      { numRuns: 200 },
    )
  })
})
