import { migrateOnce, quoteIdentifier } from '@herald/core'
import type { Sql } from 'postgres'

/** Version of the durable invalidation log's tables; bump with every change to the DDL. */
export const LOG_SCHEMA_VERSION = 2

/**
 * The DDL of the durable invalidation log. Ids are global across caches; `tx` lets a reader
 * catch rows whose transaction was still open when it last looked (ids are allocated at
 * insert, but rows become visible at commit, in another order).
 */
export function logTableSql(schema: string): string {
  const s = quoteIdentifier(schema)
  return `
create schema if not exists ${s};
create table if not exists ${s}.cache_invalidations (
  id bigint generated always as identity primary key,
  cache text not null,
  keys jsonb,
  tags jsonb,
  flush boolean not null default false,
  tx xid8 not null default pg_current_xact_id(),
  -- clock_timestamp(), not now(): a long transaction's row must not look old the moment it commits.
  created_at timestamptz not null default clock_timestamp()
);
-- A reader asks for rows with id > maxId, and rows with tx >= xmin (two range scans): the
-- primary key serves the first, this index the second, so a poll reads only recent rows
-- however long the log is. On a large existing log, create it beforehand with
-- CREATE INDEX CONCURRENTLY (a plain CREATE INDEX blocks inserts while it builds).
create index if not exists cache_invalidations_tx on ${s}.cache_invalidations (tx);
create index if not exists cache_invalidations_created_at on ${s}.cache_invalidations (created_at);
create table if not exists ${s}.cache_invalidations_pruned (
  id int primary key default 1 check (id = 1),
  through bigint not null
);`
}

/**
 * The outbox of relay-mode triggers: NOTIFYs written instead of sent (a transaction that
 * NOTIFYs takes a server-wide lock at commit, one that inserts here does not), and the
 * function an `OutboxRelay` calls to send and delete them in one transaction.
 */
export function outboxTableSql(schema: string): string {
  const s = quoteIdentifier(schema)
  return `
create schema if not exists ${s};
-- What pg_notify would refuse is refused here, in the writer's own transaction: one such row
-- in the outbox would fail every relay transaction that took it.
create table if not exists ${s}.notify_outbox (
  id bigint generated always as identity primary key,
  channel text not null check (channel <> '' and octet_length(channel) < 64),
  payload text not null check (octet_length(payload) < 8000)
);
-- Several relays at once each take their own rows (skip locked). Rows are checked again, in
-- case the table was made without the checks: a row pg_notify would refuse is dropped with a
-- warning instead of failing the batch for ever.
create or replace function ${s}.relay_notify_outbox(p_limit integer) returns integer
language plpgsql as $herald_relay$
declare
  v_row record;
  v_sent integer := 0;
begin
  for v_row in
    delete from ${s}.notify_outbox
    where id = any(array(select id from ${s}.notify_outbox order by id limit p_limit for update skip locked))
    returning channel, payload
  loop
    if v_row.channel <> '' and octet_length(v_row.channel) < 64 and octet_length(v_row.payload) < 8000 then
      perform pg_notify(v_row.channel, v_row.payload);
      v_sent := v_sent + 1;
    else
      raise warning 'herald: dropped an outbox row NOTIFY would refuse (channel %, % bytes)',
        left(v_row.channel, 63), octet_length(v_row.payload);
    end if;
  end loop;
  return v_sent;
end
$herald_relay$;`
}

/** Creates the log tables on first use; safe when many instances start at once. */
export function ensureLogTables(sql: Sql<Record<string, unknown>>, schema: string): Promise<void> {
  const s = quoteIdentifier(schema)
  return migrateOnce(sql, `lru-log:${LOG_SCHEMA_VERSION}:${schema}`, logTableSql(schema), [
    `${s}.cache_invalidations`,
    `${s}.cache_invalidations_pruned`,
  ])
}

/**
 * Creates the outbox on first use (relay triggers, OutboxRelay). Apart from the log tables:
 * a durable cache under a role that may not create anything must not need it.
 */
export function ensureOutbox(sql: Sql<Record<string, unknown>>, schema: string): Promise<void> {
  const s = quoteIdentifier(schema)
  return migrateOnce(sql, `lru-outbox:${LOG_SCHEMA_VERSION}:${schema}`, outboxTableSql(schema), [
    `${s}.notify_outbox`,
  ])
}
