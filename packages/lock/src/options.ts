import {
  assertChannelName,
  assertPlainIdentifier,
  checkConnection,
  HeraldError,
  type ConnectionConfig,
  type Herald,
} from '@herald/core'

export interface LocksOptions {
  /** The process's one `Herald`: waiters share its listener connection. */
  herald: Herald
  /** Channel of release messages. @default 'lock_release' */
  channel?: string
  /**
   * How often waiters check, with one query for every awaited name, whether a lock was freed
   * without a message (its holder crashed or lost its connection), in ms. @default 1000
   */
  sweepMs?: number
  /** A half-open lock session is found within this many ms while locks are held. @default 5000 */
  heartbeatMs?: number
  /** Schema of the fencing-token table. @default 'herald' */
  schema?: string
  /** Create the token table on first use. @default true */
  migrate?: boolean
  /** `application_name` of the lock session is this plus `-locks`. @default herald.applicationName */
  applicationName?: string
  /**
   * Where the lock session connects: a direct (or session-mode pooled) connection, since
   * advisory locks live in one backend. A session behind a transaction pooler is refused with
   * `NOT_PINNED` before any lock is taken on it.
   * @default the Herald's listen connection
   */
  lockConnection?: ConnectionConfig | undefined
}

export interface ResolvedLocksOptions {
  readonly herald: Herald
  readonly channel: string
  readonly sweepMs: number
  readonly heartbeatMs: number
  readonly schema: string
  readonly migrate: boolean
  readonly applicationName: string
  readonly lockConnection: ConnectionConfig | undefined
}

export function resolveLocksOptions(options: LocksOptions): ResolvedLocksOptions {
  if (typeof options !== 'object' || options === null || typeof options.herald?.subscribe !== 'function') {
    throw new HeraldError('INVALID_OPTION', 'new Locks({ herald }) needs the process’s Herald')
  }
  const channel = assertChannelName(options.channel ?? 'lock_release')
  const schema = assertPlainIdentifier('schema', options.schema ?? 'herald')
  checkConnection('lockConnection', options.lockConnection)
  return {
    herald: options.herald,
    channel,
    sweepMs: positive('sweepMs', options.sweepMs ?? 1_000),
    heartbeatMs: positive('heartbeatMs', options.heartbeatMs ?? 5_000),
    schema,
    migrate: options.migrate ?? true,
    applicationName: options.applicationName ?? options.herald.applicationName,
    lockConnection: options.lockConnection,
  }
}

function positive(name: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new HeraldError('INVALID_OPTION', `${name} must be a positive finite number, got ${String(value)}`)
  }
  return value
}
