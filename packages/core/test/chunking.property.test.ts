import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ChunkAssembler, MAX_NOTIFY_BYTES, toFrames } from '../src/chunking.js'
import { HeraldError } from '../src/errors.js'

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((unit) => String.fromCharCode(unit))
const anyChar = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: loneSurrogate },
  { weight: 1, arbitrary: fc.constantFrom('\u0000', '~', ':', '\n', '{') },
)
const messageId = fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/)
const utf8Bytes = (text: string) => Buffer.byteLength(text, 'utf8')
const hasLoneSurrogate = (text: string) => /\p{Cs}/u.test(text)

describe('chunking (property-based)', () => {
  it('splits any text into frames of at most maxBytes that reassemble, in any order, into it', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: anyChar, maxLength: 600 }),
        messageId,
        fc.integer({ min: 100, max: 400 }),
        fc.integer(),
        (text, id, maxBytes, seed) => {
          const frames = toFrames(text, id, maxBytes)
          for (const frame of frames) expect(utf8Bytes(frame)).toBeLessThanOrEqual(maxBytes)
          // A frame boundary never cuts a surrogate pair: well-formed text gives well-formed frames.
          if (!hasLoneSurrogate(text)) for (const frame of frames) expect(hasLoneSurrogate(frame)).toBe(false)
          if (frames.length === 1) {
            expect(frames[0]).toBe(text)
            return
          }
          const shuffled = [...frames].sort(
            (a, b) => ((a.length * 31 + seed) % 7) - ((b.length * 31 + seed) % 7),
          )
          const assembler = new ChunkAssembler()
          const results = shuffled.map((frame) => assembler.accept(frame, 'c'))
          expect(results.slice(0, -1).every((result) => result.status === 'pending')).toBe(true)
          expect(results.at(-1)).toEqual({ status: 'complete', text })
          expect(assembler.pending).toBe(0)
        },
      ),
      { numRuns: 400 },
    )
  })

  it('keeps every frame of a huge message within the NOTIFY limit and valid UTF-8', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', minLength: 5_000, maxLength: 30_000 }),
        messageId,
        (text, id) => {
          const frames = toFrames(text, id)
          for (const frame of frames) {
            expect(utf8Bytes(frame)).toBeLessThanOrEqual(MAX_NOTIFY_BYTES)
            expect(Buffer.from(frame, 'utf8').toString('utf8')).toBe(frame)
          }
          const assembler = new ChunkAssembler()
          const last = frames.map((frame) => assembler.accept(frame)).at(-1)
          expect(last).toEqual(frames.length === 1 ? { status: 'pending' } : { status: 'complete', text })
        },
      ),
      { numRuns: 15 },
    )
  })

  it('never throws on forged or garbled frames: malformed ones are invalid, with a HeraldError', () => {
    const header = fc
      .tuple(
        fc.oneof(messageId, fc.string({ maxLength: 70 })),
        fc.oneof(fc.nat({ max: 20 }), fc.integer(), fc.constant(9_999_999)),
        fc.oneof(fc.nat({ max: 20 }), fc.integer(), fc.constant(99_999_999)),
      )
      .map(([id, index, count]) => `~${id}:${index}:${count}\n`)
    const frame = fc.oneof(
      fc.string({ unit: anyChar, maxLength: 200 }),
      fc.string({ unit: anyChar, maxLength: 200 }).map((rest) => `~${rest}`),
      fc.tuple(header, fc.string({ unit: anyChar, maxLength: 100 })).map(([head, body]) => head + body),
    )
    fc.assert(
      fc.property(fc.array(frame, { maxLength: 40 }), fc.nat({ max: 8 }), (frames, maxPending) => {
        const assembler = new ChunkAssembler({ maxPending: maxPending + 1, maxChunks: 64 })
        for (const forged of frames) {
          const result = assembler.accept(forged, 'c')
          expect(['complete', 'pending', 'invalid']).toContain(result.status)
          if (result.status === 'invalid') {
            expect(result.error).toBeInstanceOf(HeraldError)
            expect(result.error.code).toBe('PAYLOAD_INVALID')
          }
          // Bounded whatever is forged.
          expect(assembler.pending).toBeLessThanOrEqual(maxPending + 1)
        }
      }),
      { numRuns: 500 },
    )
  })

  // Forged frames for the same id *and* the same count do poison a message (the first fragment
  // per index wins), but a real message id is 9 random bytes (publisher.ts), so a forger cannot
  // aim at one: the property covers what a forger can do without guessing 72 bits.
  it('a real message still completes after forged frames for its id with another count, or for other ids', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: anyChar, minLength: 300, maxLength: 800 }),
        fc.array(
          fc.tuple(fc.nat({ max: 10 }), fc.integer({ min: 2, max: 12 }), fc.string({ maxLength: 20 })),
          {
            maxLength: 10,
          },
        ),
        (text, forgeries) => {
          const frames = toFrames(text, 'm1', 120)
          const assembler = new ChunkAssembler()
          for (const [index, count, body] of forgeries) {
            const id = count === frames.length ? 'other' : 'm1'
            assembler.accept(`~${id}:${index}:${count}\n${body}`, 'c')
          }
          const last = frames.map((frame) => assembler.accept(frame, 'c')).at(-1)
          expect(last).toEqual({ status: 'complete', text })
        },
      ),
      { numRuns: 200 },
    )
  })
})
