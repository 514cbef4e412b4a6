import type { Sql } from 'postgres'
import { HeraldError } from './errors.js'

// Every Herald migration takes this advisory lock, so instances starting together create
// their tables one at a time ("herald\0\0" as a bigint).
export const MIGRATION_LOCK = 0x6865_7261_6c64_0000n

/**
 * Silences the "already exists, skipping" NOTICEs of idempotent DDL, for this implicit
 * transaction only: the client may be the app's, whose onnotice prints them by default.
 * Takes the migration lock, then makes this session see the catalog as it is now. While it
 * waited, another session may have created the schema or tables this session had already
 * looked up (and cached as missing): a `create ... if not exists` would then trust the stale
 * cache and fail on a duplicate key. Taking a catalog's lock for the first time in the
 * transaction processes the pending cache invalidations.
 */
export const TAKE_MIGRATION_LOCK = `set local client_min_messages = warning;
select pg_advisory_xact_lock(${MIGRATION_LOCK});
lock table pg_catalog.pg_namespace, pg_catalog.pg_class in access share mode;`

const done = new WeakMap<object, Map<string, Promise<void>>>()

/**
 * Runs idempotent DDL once per client and `id`, holding the migration lock. The lock and the
 * DDL travel as one multi-statement simple query, which Postgres runs as one implicit
 * transaction: the lock covers every statement without `begin()`. When every one of `tables`
 * (qualified, quoted names) already exists nothing is run: even `create ... if not exists`
 * needs CREATE privileges that a role which only reads or writes the tables lacks.
 */
export function migrateOnce(
  sql: Sql<Record<string, unknown>>,
  id: string,
  ddl: string,
  tables: readonly string[] = [],
): Promise<void> {
  let byId = done.get(sql)
  if (byId === undefined) {
    byId = new Map()
    done.set(sql, byId)
  }
  let migration = byId.get(id)
  if (migration === undefined) {
    const runs = byId
    migration = (async () => {
      if (tables.length > 0 && (await allExist(sql, tables))) return
      await sql.unsafe(`${TAKE_MIGRATION_LOCK}\n${ddl}`)
    })()
    // A failed migration may be retried by the next caller.
    migration.catch(() => runs.delete(id))
    byId.set(id, migration)
  }
  return migration
}

async function allExist(sql: Sql<Record<string, unknown>>, tables: readonly string[]): Promise<boolean> {
  const [row] = await sql<{ missing: number }[]>`
    select count(*) filter (where to_regclass(name) is null)::int as missing
    from json_array_elements_text(${JSON.stringify(tables)}::text::json) as name`
  return row?.missing === 0
}

/** Quotes an identifier (a schema or table name) for DDL. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}

/**
 * `value` if it is a plain identifier (a schema or table name Herald splices into DDL after
 * quoting): letters, digits and underscores, not starting with a digit, at most 63 bytes.
 * @throws HeraldError `INVALID_OPTION` naming `what`
 */
export function assertPlainIdentifier(what: string, value: unknown): string {
  if (typeof value !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(value)) {
    throw new HeraldError(
      'INVALID_OPTION',
      `${what} must be a plain identifier, got ${JSON.stringify(value)}`,
    )
  }
  return value
}
