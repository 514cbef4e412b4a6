import postgres, { type Options, type PostgresType, type Sql } from 'postgres'
import type { ConnectionConfig } from './options.js'

type ClientOptions = Options<Record<string, PostgresType>>

/** A postgres.js client on `config` with Herald's overrides, keeping the caller's server parameters. */
export function createClient(
  config: ConnectionConfig,
  overrides: ClientOptions & { connection?: Record<string, string> },
): Sql {
  const base: ClientOptions = typeof config === 'string' ? {} : config
  const merged: ClientOptions = {
    ...base,
    ...overrides,
    connection: { ...base.connection, ...overrides.connection },
  }
  return typeof config === 'string' ? postgres(config, merged) : postgres(merged)
}
