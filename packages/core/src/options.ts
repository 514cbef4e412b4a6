import type { Options, PostgresType, Sql } from 'postgres'
import { DEFAULT_MAX_DELAY_MS, DEFAULT_MIN_DELAY_MS, type BackoffOptions } from './backoff.js'
import { HeraldError } from './errors.js'
import { systemClock, type Clock } from './clock.js'

/** A connection string, or postgres.js options (host, port, ssl, ...; `PG*` variables fill the gaps). */
export type ConnectionConfig = string | Options<Record<string, PostgresType>>

export interface HeraldOptions {
  /**
   * Where to connect. Used for the listener connection, and for publishing unless `sql` is given.
   * Required unless both `sql` and `listenConnection` are given. `undefined` counts as not
   * given, so `connection: process.env.DATABASE_URL` type-checks and, when the variable is
   * unset, fails at construction with `INVALID_OPTION`.
   */
  connection?: ConnectionConfig | undefined
  /**
   * A direct (or session-pooled) connection for LISTEN, when `connection` goes through a
   * transaction pooler such as PgBouncer in transaction mode, which cannot hold LISTEN.
   * @default connection
   */
  listenConnection?: ConnectionConfig | undefined
  /**
   * The application's own postgres.js client, used to publish. Herald never ends it.
   * @default a client of its own on `connection`, with `publishPoolSize` connections
   */
  sql?: Sql<Record<string, unknown>>
  /** Connections of the publish client Herald creates when `sql` is not given. @default 2 */
  publishPoolSize?: number
  /**
   * A dead or half-open listener connection is found within this many ms (plus one round
   * trip): a probe runs every `heartbeatMs / 2` and must answer within `heartbeatMs / 2`.
   * @default 5000
   */
  heartbeatMs?: number
  /** Backoff between reconnect attempts; reconnecting never gives up. */
  reconnect?: BackoffOptions
  /** Opening a connection (TCP and startup) fails after this many ms. @default 10000 */
  connectTimeoutMs?: number
  /** `application_name` of Herald's connections; the listener gets a `-listener` suffix. @default 'herald' */
  applicationName?: string
  /** `close()` waits this long for running async handlers before disconnecting, in ms. @default 5000 */
  closeTimeoutMs?: number
  /**
   * A publish (or a transactional write of Herald's in your transaction) not answered within
   * this many ms rejects with `TIMEOUT` instead of hanging; the statement may still complete
   * later, so a message that timed out can yet be delivered. @default 10000
   */
  publishTimeoutMs?: number
  /** @internal Timers and the current time, for tests. */
  clock?: Clock
}

export interface ResolvedOptions {
  readonly connection: ConnectionConfig | undefined
  readonly listenConnection: ConnectionConfig
  readonly sql: Sql<Record<string, unknown>> | undefined
  readonly publishPoolSize: number
  readonly heartbeatMs: number
  readonly reconnect: Required<BackoffOptions>
  readonly connectTimeoutMs: number
  readonly applicationName: string
  readonly closeTimeoutMs: number
  readonly publishTimeoutMs: number
  readonly clock: Clock
}

export function resolveOptions(options: HeraldOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new HeraldError('INVALID_OPTION', 'new Herald(options) needs an options object')
  }
  const listenConnection = options.listenConnection ?? options.connection
  if (listenConnection === undefined) {
    throw new HeraldError('INVALID_OPTION', 'give `connection` (or `listenConnection` together with `sql`)')
  }
  if (options.connection === undefined && options.sql === undefined) {
    throw new HeraldError('INVALID_OPTION', 'give `connection` or `sql` to publish with')
  }
  checkConnection('connection', options.connection)
  checkConnection('listenConnection', options.listenConnection)
  const reconnect = {
    minDelayMs: positive('reconnect.minDelayMs', options.reconnect?.minDelayMs, DEFAULT_MIN_DELAY_MS),
    maxDelayMs: positive('reconnect.maxDelayMs', options.reconnect?.maxDelayMs, DEFAULT_MAX_DELAY_MS),
  }
  if (reconnect.maxDelayMs < reconnect.minDelayMs) {
    throw new HeraldError('INVALID_OPTION', 'reconnect.maxDelayMs must be >= reconnect.minDelayMs')
  }
  const applicationName = options.applicationName ?? 'herald'
  if (typeof applicationName !== 'string' || applicationName.length === 0 || applicationName.length > 40) {
    throw new HeraldError('INVALID_OPTION', 'applicationName must be a string of 1 to 40 characters')
  }
  return {
    connection: options.connection,
    listenConnection,
    sql: options.sql,
    publishPoolSize: positive('publishPoolSize', options.publishPoolSize, 2),
    heartbeatMs: positive('heartbeatMs', options.heartbeatMs, 5_000),
    reconnect,
    connectTimeoutMs: positive('connectTimeoutMs', options.connectTimeoutMs, 10_000),
    applicationName,
    closeTimeoutMs: positive('closeTimeoutMs', options.closeTimeoutMs, 5_000, true),
    publishTimeoutMs: positive('publishTimeoutMs', options.publishTimeoutMs, 10_000),
    clock: options.clock ?? systemClock,
  }
}

/**
 * Refuses, at construction, a connection string that postgres.js would only reject at the
 * first connect, and then with a bare `TypeError: Invalid URL`. The string is never echoed:
 * it may hold a password.
 */
export function checkConnection(name: string, value: ConnectionConfig | undefined): void {
  if (value === undefined) return
  if (typeof value === 'object' && value !== null) return
  if (typeof value !== 'string') {
    throw new HeraldError('INVALID_OPTION', `${name} must be a connection URL or postgres.js options`)
  }
  const scheme = /^(postgres(?:ql)?:\/\/)([^/?#]*@)?([^/?#]*)/i.exec(value)
  const example = 'postgres://user:password@host:5432/database'
  if (!scheme) {
    throw new HeraldError(
      'INVALID_OPTION',
      `${name} must be a postgres:// or postgresql:// URL, such as ${example}`,
    )
  }
  // postgres.js accepts several hosts (`h1:5432,h2:5433`), which URL cannot parse: check the first.
  const firstHost = (scheme[3] ?? '').split(',')[0] || 'localhost'
  try {
    new URL(scheme[1]! + (scheme[2] ?? '') + firstHost + value.slice(scheme[0].length))
  } catch {
    throw new HeraldError(
      'INVALID_OPTION',
      `${name} is not a valid connection URL (expected ${example}; characters such as @, : or / in a password must be percent-encoded)`,
    )
  }
}

function positive(name: string, value: number | undefined, fallback: number, zeroAllowed = false): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (value === 0 && !zeroAllowed)) {
    throw new HeraldError('INVALID_OPTION', `${name} must be a positive finite number, got ${String(value)}`)
  }
  return value
}
