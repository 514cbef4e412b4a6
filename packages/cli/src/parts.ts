import { configMigration } from '@herald/config'
import type { MigrationPart } from '@herald/core'
import { LOCK_SCHEMA_VERSION, lockTableSql } from '@herald/lock'
import { LOG_SCHEMA_VERSION, logTableSql, outboxTableSql } from '@herald/lru'

/**
 * Every package's tables, as `migrate()` parts: the durable invalidation log of
 * `@herald/lru`, the fencing tokens of `@herald/lock` and the config tables of `@herald/config`. The ids match the ones each package
 * uses when it creates its tables on first use.
 */
export const heraldParts: readonly MigrationPart[] = [
  {
    id: 'lru-log',
    version: LOG_SCHEMA_VERSION,
    sql: (schema: string) => `${logTableSql(schema)}\n${outboxTableSql(schema)}`,
  },
  { id: 'lock-tokens', version: LOCK_SCHEMA_VERSION, sql: lockTableSql },
  configMigration,
]
