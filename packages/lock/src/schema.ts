import { migrateOnce, quoteIdentifier } from '@herald/core'
import type { Sql } from 'postgres'

/** Version of the lock tables; bump with every change to the DDL. */
export const LOCK_SCHEMA_VERSION = 1

/** The DDL of the fencing-token table: one row per lock name ever acquired. */
export function lockTableSql(schema: string): string {
  const s = quoteIdentifier(schema)
  return `
create schema if not exists ${s};
create table if not exists ${s}.lock_tokens (
  name text primary key,
  token bigint not null,
  acquired_at timestamptz not null default now()
);`
}

/** Creates the token table on first use; safe when many instances start at once. */
export function ensureLockTables(sql: Sql<Record<string, unknown>>, schema: string): Promise<void> {
  return migrateOnce(sql, `lock-tokens:${LOCK_SCHEMA_VERSION}:${schema}`, lockTableSql(schema), [
    `${quoteIdentifier(schema)}.lock_tokens`,
  ])
}
