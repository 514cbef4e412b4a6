import { describe, expect, it } from 'vitest'
import { ChunkAssembler, MAX_NOTIFY_BYTES, toFrames } from '../src/chunking.js'

function assemble(frames: string[], assembler = new ChunkAssembler()): string | undefined {
  let text: string | undefined
  for (const frame of frames) {
    const result = assembler.accept(frame)
    if (result.status === 'invalid') throw result.error
    if (result.status === 'complete') text = result.text
  }
  return text
}

describe('toFrames', () => {
  it('leaves a message that fits alone', () => {
    const text = 'x'.repeat(MAX_NOTIFY_BYTES)
    expect(toFrames(text, 'm1')).toEqual([text])
  })

  it('splits at the byte limit, counting UTF-8 bytes, never splitting a surrogate pair', () => {
    const text = `{"b":"${'a€🎉ü'.repeat(4_000)}"}`
    const frames = toFrames(text, 'abc.1')
    expect(frames.length).toBeGreaterThan(1)
    for (const frame of frames) {
      expect(Buffer.byteLength(frame, 'utf8')).toBeLessThanOrEqual(MAX_NOTIFY_BYTES)
      // A split pair would encode as U+FFFD and not survive the round trip.
      expect(Buffer.from(frame, 'utf8').toString('utf8')).toBe(frame)
    }
    expect(assemble(frames)).toBe(text)
  })

  it('reassembles frames in any order', () => {
    const text = 'z'.repeat(50_000)
    const frames = toFrames(text, 'm2').reverse()
    expect(assemble(frames)).toBe(text)
  })

  it('makes 100 KB into 13 frames', () => {
    expect(toFrames('q'.repeat(100_000), 'id')).toHaveLength(13)
  })
})

describe('ChunkAssembler', () => {
  it('keeps interleaved messages apart', () => {
    const a = toFrames('a'.repeat(20_000), 'a')
    const b = toFrames('b'.repeat(20_000), 'b')
    const assembler = new ChunkAssembler()
    const done: string[] = []
    for (let i = 0; i < a.length; i++) {
      for (const frame of [a[i], b[i]]) {
        const result = assembler.accept(frame as string)
        if (result.status === 'complete') done.push(result.text)
      }
    }
    expect(done).toEqual(['a'.repeat(20_000), 'b'.repeat(20_000)])
    expect(assembler.pending).toBe(0)
  })

  it('ignores a duplicated frame', () => {
    const frames = toFrames('d'.repeat(20_000), 'd')
    expect(assemble([frames[0] as string, ...frames])).toBe('d'.repeat(20_000))
  })

  it.each([
    ['no newline', '~id:0:2'],
    ['a bad id', '~i d:0:2\nx'],
    ['an index past the count', '~id:2:2\nx'],
    ['a count of one', '~id:0:1\nx'],
    ['a forged huge count', '~id:0:9999999\nx'],
  ])('refuses a frame with %s', (_, frame) => {
    const result = new ChunkAssembler().accept(frame)
    expect(result.status).toBe('invalid')
  })

  it('starts a message over when a frame disagrees with what is pending, so a forged frame cannot sink it', () => {
    const assembler = new ChunkAssembler()
    const real = toFrames('r'.repeat(20_000), 'id1')
    expect(assembler.accept('~id1:0:7\nforged', 'orders').status).toBe('pending')
    let text: string | undefined
    for (const frame of real) {
      const result = assembler.accept(frame, 'orders')
      if (result.status === 'complete') text = result.text
    }
    expect(text).toBe('r'.repeat(20_000))
    expect(assembler.pending).toBe(0)
  })

  it('keeps messages with the same id on different channels apart', () => {
    const assembler = new ChunkAssembler()
    expect(assembler.accept('~same:0:2\na', 'one').status).toBe('pending')
    expect(assembler.accept('~same:1:2\nb', 'two').status).toBe('pending')
    expect(assembler.pending).toBe(2)
  })

  it('bounds partial messages by number and by age', () => {
    let now = 0
    const assembler = new ChunkAssembler({ maxPending: 3, timeoutMs: 1_000, now: () => now })
    for (const id of ['a', 'b', 'c', 'd']) assembler.accept(`~${id}:0:2\nx`)
    expect(assembler.pending).toBe(3)
    now = 5_000
    assembler.accept('~e:0:2\nx')
    expect(assembler.pending).toBe(1)
    assembler.clear()
    expect(assembler.pending).toBe(0)
  })

  it('bounds the characters held by partial messages, dropping the oldest first', () => {
    const assembler = new ChunkAssembler({ maxPendingChars: 100 })
    const forty = 'x'.repeat(40)
    expect(assembler.accept(`~a:0:3\n${forty}`)).toEqual({ status: 'pending' })
    expect(assembler.accept(`~b:0:3\n${forty}`)).toEqual({ status: 'pending' })
    expect(assembler.pendingChars).toBe(80)
    // A third partial would pass the budget: the oldest goes.
    expect(assembler.accept(`~c:0:2\n${forty}`)).toEqual({ status: 'pending' })
    expect(assembler.pending).toBe(2)
    expect(assembler.pendingChars).toBe(80)
    expect(assembler.accept(`~c:1:2\nyy`)).toEqual({ status: 'complete', text: `${forty}yy` })
    expect(assembler.pendingChars).toBe(40)
    // One message larger than the budget on its own is refused, and holds nothing.
    const result = assembler.accept(`~big:0:2\n${'z'.repeat(101)}`)
    expect(result.status).toBe('invalid')
    expect(result.status === 'invalid' && result.error.code).toBe('PAYLOAD_INVALID')
    expect(assembler.pending).toBe(0)
    expect(assembler.pendingChars).toBe(0)
    assembler.clear()
    expect(assembler.pendingChars).toBe(0)
  })
})
