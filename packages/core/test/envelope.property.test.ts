import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodeEnvelope, encodeEnvelope, serializeBody } from '../src/envelope.js'
import { HeraldError } from '../src/errors.js'

// Strings a hostile or careless producer can hand us: any code point, lone surrogates, NUL.
const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((unit) => String.fromCharCode(unit))
const hostileChar = fc.oneof(
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
  loneSurrogate,
  fc.constantFrom('\u0000', '"', '\\', '\n', '\u2028', '~', '{'),
)
const hostileString = fc.string({ unit: hostileChar, maxLength: 64 })
const jsonBody = fc.jsonValue({ maxDepth: 4, stringUnit: hostileChar })
const kind = fc.stringMatching(/^[A-Za-z0-9_.:-]{1,32}$/)
const origin = fc.string({ unit: hostileChar, minLength: 1, maxLength: 64 })

/** The code of what `action` throws; `NOT_A_HERALD_ERROR` for anything else. */
function thrownCode(action: () => unknown): string | undefined {
  try {
    action()
  } catch (error) {
    return error instanceof HeraldError ? error.code : 'NOT_A_HERALD_ERROR'
  }
  return undefined
}

describe('envelope (property-based)', () => {
  it('round-trips any JSON value: arbitrary Unicode, lone surrogates, NUL, empty', () => {
    fc.assert(
      fc.property(origin, kind, fc.array(jsonBody, { minLength: 1, maxLength: 4 }), (o, k, bodies) => {
        const text = encodeEnvelope(o, k, bodies.map(serializeBody))
        // JSON escapes lone surrogates and NUL, so the text stays valid UTF-8 for NOTIFY.
        expect(/\p{Cs}/u.test(text)).toBe(false)
        expect(text.includes('\u0000')).toBe(false)
        const decoded = decodeEnvelope(text)
        expect(decoded.origin).toBe(o)
        expect(decoded.kind).toBe(k)
        expect(decoded.bodies).toEqual(bodies.map((body) => JSON.parse(JSON.stringify(body)) as unknown))
      }),
      { numRuns: 300 },
    )
  })

  it('round-trips huge bodies', () => {
    fc.assert(
      fc.property(fc.string({ unit: hostileChar, minLength: 10_000, maxLength: 40_000 }), (big) => {
        const text = encodeEnvelope('o', 'message', [serializeBody(big)])
        expect(decodeEnvelope(text).bodies).toEqual([big])
      }),
      { numRuns: 10 },
    )
  })

  it('refuses what JSON cannot carry with PAYLOAD_INVALID, never another error', () => {
    const cyclic: Record<string, unknown> = {}
    cyclic['self'] = cyclic
    for (const payload of [undefined, () => 1, 1n, cyclic, Symbol('s')]) {
      expect(thrownCode(() => serializeBody(payload))).toBe('PAYLOAD_INVALID')
    }
    fc.assert(
      fc.property(fc.anything({ withBigInt: true }), (payload) => {
        const code = thrownCode(() => serializeBody(payload))
        expect([undefined, 'PAYLOAD_INVALID']).toContain(code)
      }),
    )
  })

  it('decodes arbitrary text to an envelope or throws PAYLOAD_INVALID, nothing else', () => {
    fc.assert(
      fc.property(fc.oneof(hostileString, fc.json(), fc.string({ unit: 'binary' })), (text) => {
        expect([undefined, 'PAYLOAD_INVALID']).toContain(thrownCode(() => decodeEnvelope(text)))
      }),
      { numRuns: 500 },
    )
  })

  it('refuses valid-looking envelopes with wrong types', () => {
    const wrong = fc.oneof(fc.constant(null), fc.boolean(), fc.integer(), fc.object(), fc.array(fc.integer()))
    const forged = fc.record(
      {
        v: fc.oneof(fc.constant(1), fc.constant('1'), fc.constant(2), wrong),
        o: fc.oneof(origin, fc.constant(''), fc.string({ minLength: 65, maxLength: 80 }), wrong),
        k: fc.oneof(kind, fc.constant(''), fc.constant('has space'), fc.string({ minLength: 33 }), wrong),
        b: jsonBody,
        bs: fc.oneof(fc.constant([]), fc.array(jsonBody), wrong),
      },
      { requiredKeys: [] },
    )
    fc.assert(
      fc.property(forged, (record) => {
        let decoded: ReturnType<typeof decodeEnvelope> | undefined
        const code = thrownCode(() => (decoded = decodeEnvelope(JSON.stringify(record))))
        if (code !== undefined) {
          expect(code).toBe('PAYLOAD_INVALID')
          return
        }
        // Accepted only if every field is what the format says.
        expect(record.v).toBe(1)
        expect(typeof record.o === 'string' && record.o.length >= 1 && record.o.length <= 64).toBe(true)
        expect(typeof record.k === 'string' && /^[A-Za-z0-9_.:-]{1,32}$/.test(record.k)).toBe(true)
        expect(decoded?.bodies.length).toBeGreaterThan(0)
      }),
      { numRuns: 500 },
    )
  })
})
