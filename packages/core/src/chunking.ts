import { HeraldError } from './errors.js'

/**
 * NOTIFY refuses a payload of 8000 bytes or more (BLCKSZ - NAMEDATALEN - 128, counted in
 * UTF-8 bytes, and "shorter than", not "up to").
 */
export const MAX_NOTIFY_BYTES = 7999

/**
 * A chunk frame: `~<message id>:<index>:<count>\n<fragment>`. The fragments of one message,
 * joined in index order, are the envelope text. An envelope starts with `{`, so the first
 * character tells the two apart without parsing.
 */
const CHUNK_MARK = '~'
const FRAME_HEADER = /^~([A-Za-z0-9_.-]{1,64}):(\d{1,7}):(\d{1,7})\n/
const MAX_INDEX_DIGITS = 7

export function isChunkFrame(payload: string): boolean {
  return payload.startsWith(CHUNK_MARK)
}

/**
 * Splits a message into frames that each fit one NOTIFY. A message that already fits is
 * returned as is. Fragments never split a surrogate pair, so every frame is valid UTF-8.
 */
export function toFrames(text: string, messageId: string, maxBytes = MAX_NOTIFY_BYTES): string[] {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return [text]
  const headerBudget = CHUNK_MARK.length + messageId.length + 2 * MAX_INDEX_DIGITS + 3
  const fragmentBudget = maxBytes - headerBudget
  if (fragmentBudget < 4) {
    throw new HeraldError('INVALID_OPTION', `frames of ${maxBytes} bytes cannot hold a fragment`)
  }
  const fragments: string[] = []
  let start = 0
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i)
    let width: number
    let units = 1
    if (unit < 0x80) width = 1
    else if (unit < 0x800) width = 2
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        width = 4
        units = 2
      } else width = 3
    } else width = 3
    if (bytes + width > fragmentBudget) {
      fragments.push(text.slice(start, i))
      start = i
      bytes = 0
    }
    bytes += width
    i += units - 1
  }
  fragments.push(text.slice(start))
  const count = fragments.length
  return fragments.map((fragment, index) => `${CHUNK_MARK}${messageId}:${index}:${count}\n${fragment}`)
}

export interface ChunkAssemblerOptions {
  /** Partial messages kept at once; the oldest is dropped beyond this. @default 1024 */
  maxPending?: number
  /** Largest message accepted, in fragments of up to ~8 KB. @default 16384 (≈ 128 MB) */
  maxChunks?: number
  /** A partial message older than this is dropped, in ms. @default 60000 */
  timeoutMs?: number
  /**
   * Characters held by all partial messages together; the oldest are dropped beyond it, so
   * forged frames cannot pin more memory than one message of the largest size accepted.
   * @default 134217728 (128 Mi)
   */
  maxPendingChars?: number
  now?: () => number
}

interface Partial {
  readonly count: number
  readonly fragments: Map<number, string>
  chars: number
  readonly startedAt: number
}

export type AssembleResult =
  | { readonly status: 'complete'; readonly text: string }
  | { readonly status: 'pending' }
  | { readonly status: 'invalid'; readonly error: HeraldError }

/**
 * Reassembles chunk frames, in any order. Frames of one message usually arrive together (they
 * commit in one statement), but a relay-mode trigger's outbox may send them in separate
 * batches, a listener gap can cut a message short and anyone may forge frames, so partial
 * messages are bounded in number, size and age.
 */
export class ChunkAssembler {
  readonly #pending = new Map<string, Partial>()
  readonly #maxPending: number
  readonly #maxChunks: number
  readonly #timeoutMs: number
  readonly #maxPendingChars: number
  readonly #now: () => number
  #pendingChars = 0

  constructor(options: ChunkAssemblerOptions = {}) {
    this.#maxPending = options.maxPending ?? 1024
    this.#maxChunks = options.maxChunks ?? 16_384
    this.#timeoutMs = options.timeoutMs ?? 60_000
    this.#maxPendingChars = options.maxPendingChars ?? 128 * 1024 * 1024
    this.#now = options.now ?? Date.now
  }

  get pending(): number {
    return this.#pending.size
  }

  /** Characters held by partial messages now. */
  get pendingChars(): number {
    return this.#pendingChars
  }

  /** Takes one frame received on `channel`; messages on different channels never mix. */
  accept(frame: string, channel = ''): AssembleResult {
    const header = FRAME_HEADER.exec(frame)
    if (header === null) return invalid('has a malformed chunk header', frame)
    const [matched, id = '', indexText = '', countText = ''] = header
    const index = Number(indexText)
    const count = Number(countText)
    if (count < 2 || count > this.#maxChunks || index >= count) {
      return invalid(`has chunk ${index} of ${count}, outside 0..${this.#maxChunks - 1}`, frame)
    }
    const now = this.#now()
    this.#expire(now)
    const slot = `${channel}\n${id}`
    let partial = this.#pending.get(slot)
    if (partial === undefined || partial.count !== count) {
      // A frame that disagrees with what is pending starts over: the frames of one message
      // commit together, so a stray (or forged) earlier frame must not sink the real message.
      if (partial !== undefined) this.#drop(slot)
      else if (this.#pending.size >= this.#maxPending) this.#dropOldest()
      partial = { count, fragments: new Map(), chars: 0, startedAt: now }
      this.#pending.set(slot, partial)
    }
    if (!partial.fragments.has(index)) {
      const fragment = frame.slice(matched.length)
      partial.fragments.set(index, fragment)
      partial.chars += fragment.length
      this.#pendingChars += fragment.length
      while (this.#pendingChars > this.#maxPendingChars && this.#pending.size > 1) this.#dropOldest(slot)
      if (this.#pendingChars > this.#maxPendingChars) {
        this.#drop(slot)
        return invalid(`makes a message larger than maxPendingChars (${this.#maxPendingChars})`, frame)
      }
    }
    if (partial.fragments.size < count) return { status: 'pending' }
    this.#drop(slot)
    let text = ''
    for (let at = 0; at < count; at++) text += partial.fragments.get(at) ?? ''
    return { status: 'complete', text }
  }

  /** Forgets every partial message: after a gap their missing frames will never come. */
  clear(): void {
    this.#pending.clear()
    this.#pendingChars = 0
  }

  #expire(now: number): void {
    for (const [slot, partial] of this.#pending) {
      if (now - partial.startedAt < this.#timeoutMs) break
      this.#drop(slot)
    }
  }

  /** Drops the oldest partial message other than `keep`. */
  #dropOldest(keep?: string): void {
    for (const slot of this.#pending.keys()) {
      if (slot === keep) continue
      this.#drop(slot)
      return
    }
  }

  #drop(slot: string): void {
    const partial = this.#pending.get(slot)
    if (partial === undefined) return
    this.#pending.delete(slot)
    this.#pendingChars -= partial.chars
  }
}

function invalid(problem: string, frame: string): AssembleResult {
  return {
    status: 'invalid',
    error: new HeraldError('PAYLOAD_INVALID', `notification frame ${problem}`, {
      details: { excerpt: frame.slice(0, 120) },
    }),
  }
}
