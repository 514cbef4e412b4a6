import { randomBytes } from 'node:crypto'
import { DEFAULT_KIND, ENVELOPE_VERSION, MAX_NOTIFY_BYTES } from '@herald/core'

/** The origin of every message the CLI publishes (`meta.origin`). */
export const CLI_ORIGIN = 'cli'

/** Room for `~cli.<12 hex>:<7 digits>:<7 digits>\n`. */
const FRAME_HEADER_BYTES = 40

/**
 * The NOTIFY payloads of one message, in the wire format of the core README: the envelope,
 * or, above 7999 bytes, chunk frames whose fragments never split a character.
 */
export function notifyPayloads(body: unknown, kind: string = DEFAULT_KIND): string[] {
  const envelope = JSON.stringify({ v: ENVELOPE_VERSION, o: CLI_ORIGIN, k: kind, b: body })
  if (Buffer.byteLength(envelope) <= MAX_NOTIFY_BYTES) return [envelope]
  const budget = MAX_NOTIFY_BYTES - FRAME_HEADER_BYTES
  const fragments: string[] = []
  let fragment = ''
  let bytes = 0
  for (const character of envelope) {
    const width = Buffer.byteLength(character)
    if (bytes + width > budget) {
      fragments.push(fragment)
      fragment = ''
      bytes = 0
    }
    fragment += character
    bytes += width
  }
  fragments.push(fragment)
  const id = `${CLI_ORIGIN}.${randomBytes(6).toString('hex')}`
  return fragments.map((text, index) => `~${id}:${index}:${fragments.length}\n${text}`)
}
