import {
  assertChannelName,
  assertPlainIdentifier,
  HeraldError,
  type Herald,
  type TransactionClient,
} from '@herald/core'
import type { Sql } from 'postgres'
import { isValidator, type ConfigSchema } from './schema.js'

export interface ConfigStoreOptions<TSchema extends ConfigSchema> {
  /** The process's one `Herald`; the store subscribes through it and, by default, queries with `herald.sql`. */
  herald: Herald
  /**
   * One Standard Schema validator per key (zod, valibot, arktype, ...). A key's default is
   * what its validator makes of `undefined`: give keys without a stored value a default, or
   * make them optional.
   */
  schema: TSchema
  /**
   * Scopes keys and versions: stores of the same namespace share values; other namespaces
   * (other apps on the same database) are invisible and never slow this one's writes.
   * @default 'default'
   */
  namespace?: string
  /** The channel change hints travel on. @default 'herald_config' */
  channel?: string
  /** Client for the config tables. @default herald.sql */
  sql?: Sql<Record<string, unknown>>
  /** Postgres schema of the config tables. @default 'herald' */
  tableSchema?: string
  /** Create the config tables on first use when they are missing. @default true */
  migrate?: boolean
  /**
   * The history is read this often as a backstop for a hint that never came, in ms; `0`
   * turns the poll off (hints and the read after every reconnect remain).
   * @default 30000
   */
  pollMs?: number
}

export interface WriteOptions {
  /**
   * The app's open transaction, from any driver or ORM ({@link TransactionClient}): the change is written in it and takes
   * effect everywhere, this instance included, when, and only if, it commits. Until then it
   * holds the namespace's version row, so other writers of the namespace wait for it.
   */
  tx?: TransactionClient
}

export interface HistoryOptions {
  /** Newest entries returned at most. @default 100 */
  limit?: number
}

export interface ResolvedConfigOptions {
  readonly herald: Herald
  readonly namespace: string
  readonly channel: string
  readonly sql: Sql<Record<string, unknown>> | undefined
  readonly tableSchema: string
  readonly migrate: boolean
  readonly pollMs: number
}

const MAX_NAME_LENGTH = 200

export function resolveConfigOptions(options: ConfigStoreOptions<ConfigSchema>): ResolvedConfigOptions {
  if (typeof options !== 'object' || options === null) {
    throw new HeraldError('INVALID_OPTION', 'new ConfigStore(options) needs an options object')
  }
  const {
    herald,
    schema,
    namespace = 'default',
    channel = 'herald_config',
    sql,
    tableSchema = 'herald',
    migrate = true,
    pollMs = 30_000,
  } = options
  if (typeof herald !== 'object' || herald === null || typeof herald.subscribe !== 'function') {
    throw new HeraldError('INVALID_OPTION', 'ConfigStore needs `herald`, the process’s Herald')
  }
  if (typeof schema !== 'object' || schema === null || Object.keys(schema).length === 0) {
    throw new HeraldError('INVALID_OPTION', 'ConfigStore needs `schema`: an object of one validator per key')
  }
  for (const [key, validator] of Object.entries(schema)) {
    assertKeyName(key)
    if (!isValidator(validator)) {
      throw new HeraldError(
        'INVALID_OPTION',
        `schema.${key} is not a Standard Schema validator (zod, valibot, arktype, ...)`,
      )
    }
  }
  if (typeof namespace !== 'string' || namespace.length === 0 || namespace.length > MAX_NAME_LENGTH) {
    throw new HeraldError(
      'INVALID_OPTION',
      `namespace must be a string of 1 to ${MAX_NAME_LENGTH} characters, got ${JSON.stringify(namespace)}`,
    )
  }
  assertChannelName(channel)
  assertPlainIdentifier('tableSchema', tableSchema)
  if (typeof migrate !== 'boolean') throw new HeraldError('INVALID_OPTION', 'migrate must be a boolean')
  if (typeof pollMs !== 'number' || !Number.isFinite(pollMs) || pollMs < 0) {
    throw new HeraldError(
      'INVALID_OPTION',
      `pollMs must be 0 or a positive finite number, got ${String(pollMs)}`,
    )
  }
  return { herald, namespace, channel, sql, tableSchema, migrate, pollMs }
}

/** @throws HeraldError `INVALID_KEY` */
export function assertKeyName(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_NAME_LENGTH) {
    throw new HeraldError(
      'INVALID_KEY',
      `config keys must be strings of 1 to ${MAX_NAME_LENGTH} characters, got ${typeof key === 'string' ? JSON.stringify(key) : typeof key}`,
    )
  }
}

/** @throws HeraldError `INVALID_OPTION` */
export function resolveLimit(options: HistoryOptions): number {
  const limit = options.limit ?? 100
  if (!Number.isInteger(limit) || limit < 1) {
    throw new HeraldError('INVALID_OPTION', `limit must be a positive integer, got ${String(limit)}`)
  }
  return limit
}
