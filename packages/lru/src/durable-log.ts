import type { Sql } from 'postgres'
import type { LogRef } from './invalidation-message.js'
import { clientRunner, type TransactionRunner } from '@herald/core'
import { quoteIdentifier } from '@herald/core'
import { ensureLogTables } from './schema.js'

/** Where a reader has read the log up to. */
export interface LogPosition {
  /** Every row with a larger id is new. */
  readonly maxId: bigint
  /** Rows of transactions from this id on may have committed since (in any id order). */
  readonly xmin: bigint
}

export interface LogRow {
  readonly ref: LogRef
  readonly keys: readonly string[] | undefined
  readonly tags: readonly string[] | undefined
  readonly flush: boolean
}

export type ReadResult =
  | { readonly status: 'rows'; readonly rows: readonly LogRow[]; readonly position: LogPosition }
  /** The log no longer reaches back to the position, or holds too much since: flush instead. */
  | { readonly status: 'gone'; readonly position: LogPosition }

export interface DurableLogOptions {
  readonly schema: string
  readonly migrate: boolean
  /** Rows read at most in one replay; more than this means a flush is cheaper. */
  readonly maxReplayRows: number
}

/**
 * The durable invalidation log of one cache: rows written in the invalidating transaction,
 * read back after a gap (instead of flushing) and on a timer (as a backstop for a lost
 * NOTIFY). Commit order is not id order, so a position is a pair: the largest id seen and the
 * oldest transaction still running then; the next read takes `id > maxId or tx >= xmin`, which
 * cannot skip a row that committed late with a small id.
 */
export class DurableLog {
  readonly #sql: Sql<Record<string, unknown>>
  readonly #cache: string
  readonly #options: DurableLogOptions
  readonly #table: string
  readonly #pruned: string
  /**
   * The largest id the log has reached, as SQL: past the pruned mark too, since a log pruned
   * empty still has an end, and rows to come lie beyond it.
   */
  readonly #end: string

  constructor(sql: Sql<Record<string, unknown>>, cache: string, options: DurableLogOptions) {
    this.#sql = sql
    this.#cache = cache
    this.#options = options
    const schema = quoteIdentifier(options.schema)
    this.#table = `${schema}.cache_invalidations`
    this.#pruned = `${schema}.cache_invalidations_pruned`
    this.#end = `greatest(coalesce((select max(id) from ${this.#table}), 0),
      coalesce((select through from ${this.#pruned} where id = 1), 0))`
  }

  async prepare(): Promise<void> {
    if (this.#options.migrate) await ensureLogTables(this.#sql, this.#options.schema)
  }

  /** Records an invalidation; inside `tx` it exists only if that transaction commits. */
  async append(
    entry: {
      keys?: readonly string[] | undefined
      tags?: readonly string[] | undefined
      flush?: boolean | undefined
    },
    tx: TransactionRunner | undefined,
  ): Promise<LogRef> {
    const keys = entry.keys === undefined ? null : JSON.stringify(entry.keys)
    const tags = entry.tags === undefined ? null : JSON.stringify(entry.tags)
    // JSON as text then cast: a string bound straight to jsonb is encoded twice by postgres.js.
    const [row] = await (tx ?? clientRunner(this.#sql)).query<{ id: string; tx: string }>(
      `insert into ${this.#table} (cache, keys, tags, flush)
       values ($1::text, $2::text::jsonb, $3::text::jsonb, $4::boolean)
       returning id::text as id, tx::text as tx`,
      [this.#cache, keys, tags, entry.flush === true],
    )
    if (row === undefined) throw new Error('insert returned no row')
    return row
  }

  /** The current end of the log: a reader starting now needs nothing before it. */
  async position(): Promise<LogPosition> {
    const [row] = await this.#sql<{ max_id: string; xmin: string }[]>`
      select ${this.#sql.unsafe(this.#end)}::text as max_id,
             pg_snapshot_xmin(pg_current_snapshot())::text as xmin`
    if (row === undefined) throw new Error('position query returned no row')
    return { maxId: BigInt(row.max_id), xmin: BigInt(row.xmin) }
  }

  /** Every row of this cache not covered by `after`, and the position after them; one snapshot. */
  async read(after: LogPosition): Promise<ReadResult> {
    const limit = this.#options.maxReplayRows
    const [row] = await this.#sql<
      { rows: string; max_id: string; xmin: string; pruned_through: string; more: boolean }[]
    >`
      with found as (
        -- Two halves, not one OR: each is a range scan of its own index over recent rows only,
        -- where an OR under "order by id" gets a walk of the whole primary key.
        select id, tx, keys, tags, flush from (
          select id, tx, keys, tags, flush from ${this.#sql.unsafe(this.#table)}
          where cache = ${this.#cache} and id > ${after.maxId.toString()}::bigint
          union all
          select id, tx, keys, tags, flush from ${this.#sql.unsafe(this.#table)}
          where cache = ${this.#cache} and tx >= ${after.xmin.toString()}::xid8
            and id <= ${after.maxId.toString()}::bigint
        ) recent
        order by id
        limit ${limit + 1}
      )
      select
        (select coalesce(json_agg(json_build_array(id::text, tx::text, keys, tags, flush) order by id), '[]'::json)
           from (select * from found order by id limit ${limit}) first)::text as rows,
        (select count(*) > ${limit} from found) as more,
        ${this.#sql.unsafe(this.#end)}::text as max_id,
        pg_snapshot_xmin(pg_current_snapshot())::text as xmin,
        coalesce((select through from ${this.#sql.unsafe(this.#pruned)} where id = 1), 0)::text as pruned_through`
    if (row === undefined) throw new Error('log query returned no row')
    const position = { maxId: BigInt(row.max_id), xmin: BigInt(row.xmin) }
    if (row.more || BigInt(row.pruned_through) > after.maxId) return { status: 'gone', position }
    const rows = (JSON.parse(row.rows) as [string, string, string[] | null, string[] | null, boolean][]).map(
      ([id, tx, keys, tags, flush]): LogRow => ({
        ref: { id, tx },
        keys: keys ?? undefined,
        tags: tags ?? undefined,
        flush,
      }),
    )
    return { status: 'rows', rows, position }
  }

  /** Deletes rows older than `retentionMs` and records how far the log was cut. */
  async prune(retentionMs: number): Promise<number> {
    const [row] = await this.#sql<{ deleted: number }[]>`
      with deleted as (
        delete from ${this.#sql.unsafe(this.#table)}
        where created_at < now() - make_interval(secs => ${retentionMs / 1000}::float8)
        returning id
      ), marked as (
        insert into ${this.#sql.unsafe(this.#pruned)} (id, through)
        select 1, max(id) from deleted having count(*) > 0
        on conflict (id) do update set through = greatest(${this.#sql.unsafe(this.#pruned)}.through, excluded.through)
      )
      select count(*)::int as deleted from deleted`
    return row?.deleted ?? 0
  }
}
