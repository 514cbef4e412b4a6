import type { Sql } from 'postgres'

// Every Herald migration takes this advisory lock, so instances starting together create
// their tables one at a time ("herald\0\0" as a bigint).
const MIGRATION_LOCK = 0x6865_7261_6c64_0000n

const done = new WeakMap<object, Map<string, Promise<void>>>()

/**
 * Runs idempotent DDL once per client and `id`, holding the migration lock. The lock and the
 * DDL travel as one multi-statement simple query, which Postgres runs as one implicit
 * transaction: the lock covers every statement without `begin()`.
 */
export function migrateOnce(sql: Sql<Record<string, unknown>>, id: string, ddl: string): Promise<void> {
  let byId = done.get(sql)
  if (byId === undefined) {
    byId = new Map()
    done.set(sql, byId)
  }
  let migration = byId.get(id)
  if (migration === undefined) {
    const runs = byId
    migration = sql.unsafe(`select pg_advisory_xact_lock(${MIGRATION_LOCK});\n${ddl}`).then(() => undefined)
    // A failed migration may be retried by the next caller.
    migration.catch(() => runs.delete(id))
    byId.set(id, migration)
  }
  return migration
}

/** Quotes an identifier (a schema or table name) for DDL. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}
