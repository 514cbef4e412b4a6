/**
 * Every failure Herald reports, as a stable string a program can switch on.
 *
 * - `INVALID_CHANNEL`: a channel name Postgres would reject, truncate or fold.
 * - `PAYLOAD_INVALID`: a value that is not JSON, or a notification that is not a Herald envelope.
 * - `NOT_STARTED`: `subscribe`/`publish` before `start()`.
 * - `CLOSED`: any call after `close()`.
 * - `CONNECTION_FAILED`: the server could not be reached, or a query failed on the way.
 * - `HOT_STANDBY`: the server is a read replica; LISTEN and NOTIFY need the primary.
 * - `TIMEOUT` / `ABORTED`: a wait ran out of time, or its `AbortSignal` fired.
 * - `HANDLER_FAILED`: a subscriber's handler threw or rejected.
 * - `INVALID_OPTION`: a constructor or call option out of range.
 * - `INVALID_KEY`: a cache key or tag that is not a non-empty string.
 * - `VALUE_INVALID`: a value its schema refuses: a config `set` (nothing is written), or a
 *   stored config value read back (ignored, the last good value kept).
 * - `LOCK_LOST`: a held lock's session ended (connection lost), so the lock is no longer held.
 */
export type HeraldErrorCode =
  | 'INVALID_CHANNEL'
  | 'PAYLOAD_INVALID'
  | 'NOT_STARTED'
  | 'CLOSED'
  | 'CONNECTION_FAILED'
  | 'HOT_STANDBY'
  | 'TIMEOUT'
  | 'ABORTED'
  | 'HANDLER_FAILED'
  | 'INVALID_OPTION'
  | 'INVALID_KEY'
  | 'VALUE_INVALID'
  | 'LOCK_LOST'
  | 'NOT_PINNED'

export interface HeraldErrorOptions {
  /** The underlying error: a driver error, an `AbortSignal` reason, a handler's throw. */
  cause?: unknown
  /** Facts about the failure (channel, payload excerpt, SQLSTATE) for logs. */
  details?: Readonly<Record<string, unknown>>
}

/** The one error class Herald throws, rejects with and emits. Switch on `code`, not on `message`. */
export class HeraldError extends Error {
  override readonly name = 'HeraldError'
  readonly code: HeraldErrorCode
  readonly details: Readonly<Record<string, unknown>>

  constructor(code: HeraldErrorCode, message: string, options: HeraldErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.details = options.details ?? {}
  }
}

export function isHeraldError(value: unknown, code?: HeraldErrorCode): value is HeraldError {
  return value instanceof HeraldError && (code === undefined || value.code === code)
}

/** SQLSTATE of a postgres.js error, when the server sent one. */
export function sqlState(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
}

// 25006 read_only_sql_transaction: "cannot execute LISTEN during recovery".
const HOT_STANDBY_STATE = '25006'

/** Wraps a driver failure in a HeraldError, keeping the original as `cause`. */
export function toConnectionError(error: unknown, action: string): HeraldError {
  if (error instanceof HeraldError) return error
  const state = sqlState(error)
  if (state === HOT_STANDBY_STATE) {
    return new HeraldError(
      'HOT_STANDBY',
      `${action}: the server is a hot standby; LISTEN and NOTIFY need the primary`,
      { cause: error, details: { sqlState: state } },
    )
  }
  const reason = error instanceof Error ? error.message : String(error)
  return new HeraldError('CONNECTION_FAILED', `${action}: ${reason}`, {
    cause: error,
    details: state === undefined ? {} : { sqlState: state },
  })
}
