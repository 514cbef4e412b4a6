import { HeraldError } from './errors.js'

/** Postgres identifiers hold at most NAMEDATALEN - 1 = 63 bytes; LISTEN truncates longer ones silently. */
export const MAX_CHANNEL_BYTES = 63

// Letters and digits of any script, plus a few separators. Everything else —
// quotes, whitespace, semicolons, backslashes, control characters — is refused
// rather than escaped, so a channel name can be pasted into psql unquoted-safe
// and never needs to be trusted.
const CHANNEL_PATTERN = /^[\p{L}\p{N}_][\p{L}\p{N}_.:\-/$]*$/u

/**
 * Checks a channel name before any I/O and returns it.
 * @throws HeraldError `INVALID_CHANNEL`
 */
export function assertChannelName(channel: unknown): string {
  if (typeof channel === 'string' && validated.has(channel)) return channel
  if (typeof channel !== 'string') {
    throw new HeraldError('INVALID_CHANNEL', `channel must be a string, got ${typeof channel}`)
  }
  if (channel.length === 0) throw new HeraldError('INVALID_CHANNEL', 'channel must not be empty')
  const bytes = Buffer.byteLength(channel, 'utf8')
  if (bytes > MAX_CHANNEL_BYTES) {
    throw new HeraldError(
      'INVALID_CHANNEL',
      `channel ${JSON.stringify(channel.slice(0, 80))} is ${bytes} bytes; Postgres keeps only ${MAX_CHANNEL_BYTES}, so LISTEN would truncate it and never meet its publisher`,
      { details: { channel, bytes } },
    )
  }
  if (!CHANNEL_PATTERN.test(channel)) {
    throw new HeraldError(
      'INVALID_CHANNEL',
      `channel ${JSON.stringify(channel)} may hold only letters, digits and _ . : - / $, and must start with a letter, digit or _`,
      { details: { channel } },
    )
  }
  // Publishing goes to a handful of channels over and over: remember the good ones, within bounds.
  if (validated.size >= MAX_REMEMBERED) validated.clear()
  validated.add(channel)
  return channel
}

const MAX_REMEMBERED = 1024
const validated = new Set<string>()

/** Quotes a validated channel name for LISTEN/UNLISTEN, which take an identifier, not a parameter. */
export function quoteChannel(channel: string): string {
  return `"${channel.replaceAll('"', '""')}"`
}
