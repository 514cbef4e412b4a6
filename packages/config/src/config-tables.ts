import { HeraldError, quoteIdentifier, clientRunner, type TransactionRunner } from '@herald/core'
import type { Sql } from 'postgres'
import { CONFIG_KIND } from './config-message.js'

/** A key's current row in `config_values`. */
export interface StoredValue {
  readonly key: string
  /** The stored JSON as canonical jsonb text; `undefined`: reset to the default. */
  readonly text: string | undefined
  readonly version: number
  readonly changedAt: Date
  readonly changedBy: string
}

/** One row of `config_history`. */
export interface StoredChange extends StoredValue {
  readonly applicationName: string
  readonly rolledBackTo: number | undefined
}

export interface Snapshot {
  /** The namespace's latest committed version. */
  readonly head: number
  readonly values: readonly StoredValue[]
}

export interface Changes {
  /** The namespace's latest committed version, in the same snapshot as `changes`. */
  readonly head: number
  /** Changes after the asked version, in version order, at most the asked limit. */
  readonly changes: readonly StoredChange[]
}

export interface Written {
  readonly version: number
  readonly text: string | undefined
  readonly changedAt: Date
  readonly changedBy: string
}

type Run = Sql<Record<string, unknown>>
type JsonRow = [string, string, string | null, string, string, string | null, string | null]

/**
 * Every query of a config store, each one statement: postgres.js 3.4.9 can crash the process
 * when a backend dies under `begin()`, so Herald never opens a transaction of its own.
 */
export class ConfigTables {
  readonly #sql: () => Run
  readonly #namespace: string
  readonly #heads: string
  readonly #values: string
  readonly #history: string

  constructor(sql: () => Run, schema: string, namespace: string) {
    this.#sql = sql
    this.#namespace = namespace
    const s = quoteIdentifier(schema)
    this.#heads = `${s}.config_heads`
    this.#values = `${s}.config_values`
    this.#history = `${s}.config_history`
  }

  /** Every stored value and the version they are at: one statement, so one consistent snapshot. */
  async snapshot(): Promise<Snapshot> {
    const sql = this.#sql()
    const [row] = await sql<{ head: string; rows: string }[]>`
      select
        coalesce((select version from ${sql.unsafe(this.#heads)} where namespace = ${this.#namespace}), 0)::text as head,
        coalesce((
          select json_agg(json_build_array(version::text, key, value::text, updated_at, updated_by, null, null))
          from ${sql.unsafe(this.#values)} where namespace = ${this.#namespace}
        ), '[]')::text as rows`
    if (row === undefined) throw new Error('the snapshot query returned no row')
    return { head: Number(row.head), values: parseRows(row.rows) }
  }

  /** The changes after `after`, oldest first, and the head in the same snapshot. */
  async changesAfter(after: number, limit: number): Promise<Changes> {
    const sql = this.#sql()
    const [row] = await sql<{ head: string; rows: string }[]>`
      select
        coalesce((select version from ${sql.unsafe(this.#heads)} where namespace = ${this.#namespace}), 0)::text as head,
        coalesce((
          select json_agg(json_build_array(version::text, key, value::text, changed_at, changed_by, application_name, rolled_back_to::text) order by version)
          from (
            select * from ${sql.unsafe(this.#history)}
            where namespace = ${this.#namespace} and version > ${after}::bigint
            order by version
            limit ${limit}::int
          ) h
        ), '[]')::text as rows`
    if (row === undefined) throw new Error('the history query returned no row')
    return { head: Number(row.head), changes: parseRows(row.rows) }
  }

  /**
   * Writes one change and its hint in one statement (and so one transaction, or the caller's):
   * 1. `heads`: the namespace's version row is incremented. Its row lock is held until commit,
   *    so a second writer waits here and allocates the next version only once the first has
   *    committed (or rolled back, leaving no hole). Versions therefore become visible in
   *    order, and a reader that has applied version N can ask for "after N" without ever
   *    skipping a change that commits late. A sequence could not do that (its values are
   *    handed out at once and commit in any order), and an advisory lock could be taken, and
   *    held, by any role that can connect; the row lock needs UPDATE on the table.
   * 2. `config_values`: the value (`null`: reset) is upserted; `on conflict` sees rows that
   *    committed while we waited, where a plain update of the statement snapshot would not.
   * 3. `config_history`: the audit row, with `current_user` and `application_name`.
   * 4. `pg_notify`: the hint, delivered on commit only.
   *
   * Under REPEATABLE READ or SERIALIZABLE a concurrent write fails the caller's transaction
   * with a serialization error (40001) instead of waiting: retry it.
   */
  async write(
    key: string,
    text: string | undefined,
    hint: { readonly channel: string; readonly origin: string },
    options: { readonly tx?: TransactionRunner | undefined; readonly rolledBackTo?: number | undefined },
  ): Promise<Written> {
    const run = options.tx ?? clientRunner(this.#sql())
    // JSON goes in as text and is cast: a string bound straight to jsonb is encoded twice by
    // postgres.js. Text columns only, and the NOTIFY in FROM rather than as a void column, so
    // that every driver of a caller's transaction reads the same row.
    const [row] = await run.query<{
      version: string
      value: string | null
      changed_at: string
      changed_by: string
    }>(
      `with head as (
        insert into ${this.#heads} as h (namespace, version) values ($1::text, 1)
        on conflict (namespace) do update set version = h.version + 1
        returning version
      ), stored as (
        insert into ${this.#values} as v (namespace, key, value, version)
        select $1::text, $2::text, $3::text::jsonb, version from head
        on conflict (namespace, key) do update
          set value = excluded.value, version = excluded.version, updated_at = now(), updated_by = current_user
        returning 1
      ), logged as (
        insert into ${this.#history} (namespace, version, key, value, rolled_back_to)
        select $1::text, version, $2::text, $3::text::jsonb, $4::bigint from head
        returning version, value, changed_at, changed_by
      )
      select version::text as version, value::text as value,
        to_json(changed_at)#>>'{}' as changed_at, changed_by::text as changed_by
      from logged, pg_notify($5::text, json_build_object(
        'v', 1, 'o', $6::text, 'k', $7::text,
        'b', json_build_object('n', $1::text, 'v', logged.version)
      )::text)`,
      [
        this.#namespace,
        key,
        text ?? null,
        options.rolledBackTo ?? null,
        hint.channel,
        hint.origin,
        CONFIG_KIND,
      ],
    )
    if (row === undefined) throw new Error('the write returned no row')
    return {
      version: Number(row.version),
      text: row.value ?? undefined,
      changedAt: new Date(row.changed_at),
      changedBy: row.changed_by,
    }
  }

  /** The value `key` had at `version` (`{ text: undefined }`: reset), or `undefined` if it has no such version. */
  async valueAt(
    key: string,
    version: number,
    tx: TransactionRunner | undefined,
  ): Promise<{ readonly text: string | undefined } | undefined> {
    const [row] = await (tx ?? clientRunner(this.#sql())).query<{ value: string | null }>(
      `select value::text as value from ${this.#history}
       where namespace = $1::text and key = $2::text and version = $3::bigint`,
      [this.#namespace, key, version],
    )
    return row === undefined ? undefined : { text: row.value ?? undefined }
  }

  /** The newest `limit` changes of `key`, newest first. */
  async history(key: string, limit: number): Promise<StoredChange[]> {
    const sql = this.#sql()
    const rows = await sql<
      {
        version: string
        value: string | null
        changed_at: Date
        changed_by: string
        application_name: string
        rolled_back_to: string | null
      }[]
    >`
      select version::text as version, value::text as value, changed_at, changed_by, application_name,
             rolled_back_to::text as rolled_back_to
      from ${sql.unsafe(this.#history)}
      where namespace = ${this.#namespace} and key = ${key}
      order by version desc
      limit ${limit}::int`
    return rows.map((row) => ({
      key,
      version: Number(row.version),
      text: row.value ?? undefined,
      changedAt: row.changed_at,
      changedBy: row.changed_by,
      applicationName: row.application_name,
      rolledBackTo: row.rolled_back_to === null ? undefined : Number(row.rolled_back_to),
    }))
  }
}

function parseRows(text: string): StoredChange[] {
  const rows = JSON.parse(text) as JsonRow[]
  return rows.map(([version, key, value, changedAt, changedBy, applicationName, rolledBackTo]) => ({
    key,
    version: Number(version),
    text: value ?? undefined,
    changedAt: new Date(changedAt),
    changedBy,
    applicationName: applicationName ?? '',
    rolledBackTo: rolledBackTo === null ? undefined : Number(rolledBackTo),
  }))
}

/** A driver failure as a HeraldError, keeping the driver's error as `cause` and its SQLSTATE. */
export function queryFailed(error: unknown, action: string): HeraldError {
  if (error instanceof HeraldError) return error
  const code = (error as { code?: unknown } | null)?.code
  const sqlState = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
  const reason = error instanceof Error ? error.message : String(error)
  // 25006 read_only_sql_transaction: a write sent to a hot standby.
  return new HeraldError(sqlState === '25006' ? 'HOT_STANDBY' : 'CONNECTION_FAILED', `${action}: ${reason}`, {
    cause: error,
    details: sqlState === undefined ? {} : { sqlState },
  })
}
