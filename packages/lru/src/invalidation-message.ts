import { HeraldError } from '@herald/core'

/** The envelope kind of every cache message on the invalidation channel. */
export const INVALIDATION_KIND = 'invalidate'

/**
 * The body of a cache message (inside a Herald envelope of kind `invalidate`), documented so
 * triggers and other languages can produce it:
 *
 * ```json
 * {"c":"users","k":["user:1","user:2"]}   // evict these keys
 * {"c":"users","t":["org:7"]}             // evict every key set with one of these tags
 * {"c":"users","f":1}                     // evict everything
 * ```
 *
 * Optional: `i`, the id of the sending cache instance; `p`, the id of a transactional invalidation (its publisher stops blocking those
 * keys when its own message arrives, that is, at commit); `l`, `[id, txid]` of the durable
 * log row that recorded it (as text).
 */
export interface InvalidationMessage {
  readonly cache: string
  /** The sending cache instance (`i`): with several caches of one name on one Herald, only the sender skips its own. */
  readonly instance: string | undefined
  readonly keys: readonly string[] | undefined
  readonly tags: readonly string[] | undefined
  readonly flush: boolean
  readonly pendingId: string | undefined
  readonly logRef: LogRef | undefined
}

/** A durable log row: its id and the id of the transaction that wrote it, both as text. */
export interface LogRef {
  readonly id: string
  readonly tx: string
}

export function encodeInvalidation(
  message: Omit<InvalidationMessage, 'flush'> & { flush?: boolean | undefined },
): Record<string, unknown> {
  const body: Record<string, unknown> = { c: message.cache }
  if (message.instance !== undefined) body['i'] = message.instance
  if (message.keys !== undefined) body['k'] = message.keys
  if (message.tags !== undefined) body['t'] = message.tags
  if (message.flush === true) body['f'] = 1
  if (message.pendingId !== undefined) body['p'] = message.pendingId
  if (message.logRef !== undefined) body['l'] = [message.logRef.id, message.logRef.tx]
  return body
}

/**
 * Reads a message body; `undefined` when it is for another cache.
 * @throws HeraldError `PAYLOAD_INVALID` for a body that is not a cache message.
 */
export function decodeInvalidation(body: unknown, cache: string): InvalidationMessage | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('is not an object')
  const record = body as Record<string, unknown>
  const target = record['c']
  if (typeof target !== 'string') throw invalid('names no cache "c"')
  if (target !== cache) return undefined
  const keys = stringList(record['k'], 'k')
  const tags = stringList(record['t'], 't')
  const flush = record['f'] === 1 || record['f'] === true
  if (keys === undefined && tags === undefined && !flush) throw invalid('has none of "k", "t", "f"')
  const pendingId = record['p']
  if (pendingId !== undefined && typeof pendingId !== 'string') throw invalid('has a non-string "p"')
  const instance = typeof record['i'] === 'string' ? record['i'] : undefined
  return { cache, instance, keys, tags, flush, pendingId, logRef: logRef(record['l']) }
}

function stringList(value: unknown, field: string): string[] | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
    throw invalid(`has a "${field}" that is not a list of strings`)
  }
  return value
}

function logRef(value: unknown): LogRef | undefined {
  if (value === undefined) return undefined
  if (
    Array.isArray(value) &&
    value.length === 2 &&
    value.every((part) => typeof part === 'string' && /^\d{1,20}$/.test(part))
  ) {
    return { id: value[0] as string, tx: value[1] as string }
  }
  throw invalid('has a malformed log reference "l"')
}

function invalid(problem: string): HeraldError {
  return new HeraldError('PAYLOAD_INVALID', `cache invalidation message ${problem}; ignored`)
}
