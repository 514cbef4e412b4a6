import { migrateOnce, quoteIdentifier } from '@herald/core'
import type { Sql } from 'postgres'

/** Version of the config tables; bump with every change to the DDL. */
export const CONFIG_SCHEMA_VERSION = 1

/**
 * The DDL of the config tables, idempotent, for teams that run their own migrations.
 *
 * - `config_heads`: one row per namespace holding its latest version. Every write updates it
 *   in the writing transaction: the row lock serializes writers until commit, so versions are
 *   gapless and commit in the order they were allocated.
 * - `config_values`: the current value of every key that has one (no row: the schema default).
 * - `config_history`: one row per version, append-only; `value` null means "reset to the
 *   default". Instances catch up from it, and `history()`/`rollback()` read it.
 */
export function configTableSql(schema: string): string {
  const s = quoteIdentifier(schema)
  return `
create schema if not exists ${s};
create table if not exists ${s}.config_heads (
  namespace text primary key,
  version bigint not null check (version >= 0)
);
create table if not exists ${s}.config_values (
  namespace text not null,
  key text not null,
  value jsonb,
  version bigint not null,
  updated_at timestamptz not null default now(),
  updated_by text not null default current_user,
  primary key (namespace, key)
);
create table if not exists ${s}.config_history (
  namespace text not null,
  version bigint not null,
  key text not null,
  value jsonb,
  changed_at timestamptz not null default now(),
  changed_by text not null default current_user,
  application_name text not null default current_setting('application_name'),
  rolled_back_to bigint,
  primary key (namespace, version)
);
create index if not exists config_history_key on ${s}.config_history (namespace, key, version);`
}

/**
 * The config tables as one part of `herald migrate` (the shape of core's `MigrationPart`):
 * `{ id, version, sql(schema) }`.
 */
export const configMigration = {
  id: 'config',
  version: CONFIG_SCHEMA_VERSION,
  sql: configTableSql,
} as const satisfies { readonly id: string; readonly version: number; sql(schema: string): string }

/** The tables the DDL creates, to check for them before trying to create them. */
const TABLES = ['config_heads', 'config_values', 'config_history'] as const

/**
 * Creates the config tables on first use, under the lock every Herald migration takes, and
 * runs nothing when they already exist (a role that only reads config cannot CREATE).
 */
export function ensureConfigTables(sql: Sql<Record<string, unknown>>, schema: string): Promise<void> {
  const tables = TABLES.map((table) => `${quoteIdentifier(schema)}.${table}`)
  return migrateOnce(sql, `config:${CONFIG_SCHEMA_VERSION}:${schema}`, configTableSql(schema), tables)
}
