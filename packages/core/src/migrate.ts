import type { Sql } from 'postgres'
import { HeraldError, sqlState, toConnectionError } from './errors.js'
import { assertPlainIdentifier, TAKE_MIGRATION_LOCK, quoteIdentifier } from './migrate-once.js'

/**
 * One package's set of tables, as `migrate()` applies it. Core cannot import the packages
 * that own tables, so each contributes a part: `@herald/lru` its durable invalidation log,
 * `@herald/lock` its fencing tokens, `@herald/config` its values and history.
 */
export interface MigrationPart {
  /** Stable name, recorded in `<schema>.migrations`: 1–63 characters of `a-z 0-9 _ . -`. */
  readonly id: string
  /** Version of the DDL; bump with every change to it. A positive integer. */
  readonly version: number
  /**
   * The DDL for `schema`: idempotent (`create ... if not exists`, `alter ... add column if not
   * exists`), bringing any earlier version of the part up to this one, and free of
   * transaction control (it runs inside one implicit transaction).
   */
  sql(schema: string): string
}

export interface MigrateOptions {
  /** Schema of every Herald table. @default 'herald' */
  schema?: string
  /** The table sets to create; the `herald` CLI passes every package's. @default [] */
  parts?: readonly MigrationPart[]
}

/** What `migrate()` did with one part. */
export interface MigrationOutcome {
  readonly id: string
  /** The version this code knows. */
  readonly version: number
  /** The version the database had before, if any. */
  readonly previous: number | undefined
  /**
   * `'applied'`: its DDL ran now; `'current'`: already at this version; `'newer'`: the database
   * is at a later version (a newer release migrated it), left as it is.
   */
  readonly status: 'applied' | 'current' | 'newer'
}

const PART_ID = /^[a-z0-9][a-z0-9_.-]{0,62}$/

/**
 * Creates every table of `parts` in `schema`, recording each part's version in
 * `<schema>.migrations`. Idempotent; safe when many instances start at once: parts already at
 * their version are skipped after one read, and each part that is not runs as one
 * multi-statement simple query — one implicit transaction, without `begin()` — under the
 * advisory lock every Herald migration takes, so concurrent runs apply it one at a time and
 * a failed part leaves nothing behind.
 * @throws HeraldError `INVALID_OPTION` (before any I/O), `CONNECTION_FAILED`
 */
export async function migrate(
  sql: Sql<Record<string, unknown>>,
  options: MigrateOptions = {},
): Promise<MigrationOutcome[]> {
  const { schema, parts } = resolveMigrateOptions(options)
  let applied: Map<string, number>
  try {
    applied = await appliedVersions(sql, schema)
  } catch (error) {
    throw toConnectionError(error, 'reading the applied migrations failed')
  }
  const outcomes: MigrationOutcome[] = []
  for (const part of parts) {
    const previous = applied.get(part.id)
    if (previous !== undefined && previous >= part.version) {
      outcomes.push({
        id: part.id,
        version: part.version,
        previous,
        status: previous === part.version ? 'current' : 'newer',
      })
      continue
    }
    try {
      await sql.unsafe(
        `${TAKE_MIGRATION_LOCK}\n${migrationsTableSql(schema)}\n` +
          `${skipIfAppliedSql(part, schema)}\n${partSql(part, schema)}`,
      )
    } catch (error) {
      if (sqlState(error) !== ALREADY_APPLIED) {
        throw toConnectionError(error, `migration ${part.id} v${part.version} failed`)
      }
      // Another run applied it between our read and our lock: report what it left.
      const now = (await appliedVersions(sql, schema)).get(part.id) ?? part.version
      outcomes.push({
        id: part.id,
        version: part.version,
        previous: now,
        status: now === part.version ? 'current' : 'newer',
      })
      continue
    }
    outcomes.push({ id: part.id, version: part.version, previous, status: 'applied' })
  }
  return outcomes
}

/**
 * The whole DDL `migrate()` would run, as one script for teams that run their own
 * migrations (`herald sql`): the schema, `<schema>.migrations`, then each part followed by
 * the row recording its version, so a later `migrate()` finds it applied.
 * @throws HeraldError `INVALID_OPTION`
 */
export function migrationSql(options: MigrateOptions = {}): string {
  const { schema, parts } = resolveMigrateOptions(options)
  const sections = [
    `-- Herald tables in schema ${schema}: ${parts.map((part) => `${part.id} v${part.version}`).join(', ') || 'none'}.\n` +
      '-- Idempotent. Run it in one transaction (psql --single-transaction -f, or your migration tool).',
    migrationsTableSql(schema).trim(),
    ...parts.map((part) => `-- ${part.id} v${part.version}\n${partSql(part, schema).trim()}`),
  ]
  return `${sections.join('\n\n')}\n`
}

/** `create table <schema>.migrations`: one row per part and version applied. */
function migrationsTableSql(schema: string): string {
  const s = quoteIdentifier(schema)
  return `
create schema if not exists ${s};
create table if not exists ${s}.migrations (
  part text not null,
  version integer not null,
  applied_at timestamptz not null default now(),
  primary key (part, version)
);`
}

/** Raised, under the lock, when the part is already at (or past) its version: nothing runs. */
const ALREADY_APPLIED = 'HRL01'

/**
 * The versions read before taking the lock may be stale by the time it is held (another
 * instance, maybe an older release, migrated meanwhile): check again under it, and abort the
 * script rather than run a part's DDL over a version it does not know.
 */
function skipIfAppliedSql(part: MigrationPart, schema: string): string {
  return `do $herald_migrate$ begin
  if exists (select 1 from ${quoteIdentifier(schema)}.migrations where part = '${part.id}' and version >= ${part.version}) then
    raise exception using errcode = '${ALREADY_APPLIED}', message = 'herald migration ${part.id} v${part.version} already applied';
  end if;
end $herald_migrate$;`
}

function partSql(part: MigrationPart, schema: string): string {
  // Ids are checked against PART_ID, versions are integers: nothing here needs escaping.
  const ddl = part.sql(schema).trim()
  // A part whose last statement has no semicolon would run into the insert below.
  return `${ddl}${ddl.endsWith(';') ? '' : ';'}
insert into ${quoteIdentifier(schema)}.migrations (part, version) values ('${part.id}', ${part.version})
  on conflict do nothing;`
}

async function appliedVersions(
  sql: Sql<Record<string, unknown>>,
  schema: string,
): Promise<Map<string, number>> {
  const table = `${quoteIdentifier(schema)}.migrations`
  const [exists] = await sql<{ found: boolean }[]>`select to_regclass(${table}) is not null as found`
  if (exists?.found !== true) return new Map()
  const rows = await sql<{ part: string; version: number }[]>`
    select part, max(version)::int as version from ${sql.unsafe(table)} group by part`
  return new Map(rows.map((row) => [row.part, row.version]))
}

function resolveMigrateOptions(options: MigrateOptions): {
  schema: string
  parts: readonly MigrationPart[]
} {
  if (typeof options !== 'object' || options === null) {
    throw new HeraldError('INVALID_OPTION', 'migrate options must be an object')
  }
  const schema = assertPlainIdentifier('schema', options.schema ?? 'herald')
  const parts = options.parts ?? []
  if (!Array.isArray(parts))
    throw new HeraldError('INVALID_OPTION', 'parts must be an array of migration parts')
  const seen = new Set<string>()
  for (const part of parts as readonly unknown[]) {
    const candidate = part as Partial<MigrationPart> | null
    if (
      typeof candidate !== 'object' ||
      candidate === null ||
      typeof candidate.id !== 'string' ||
      !PART_ID.test(candidate.id) ||
      typeof candidate.version !== 'number' ||
      !Number.isSafeInteger(candidate.version) ||
      candidate.version < 1 ||
      candidate.version > 2_147_483_647 ||
      typeof candidate.sql !== 'function'
    ) {
      throw new HeraldError(
        'INVALID_OPTION',
        'a migration part is { id: 1–63 characters of a-z 0-9 _ . -, version: a positive integer, sql(schema) }',
        { details: { part: typeof candidate?.id === 'string' ? candidate.id : undefined } },
      )
    }
    if (seen.has(candidate.id)) {
      throw new HeraldError('INVALID_OPTION', `migration part ${candidate.id} is given twice`)
    }
    seen.add(candidate.id)
  }
  return { schema, parts }
}
