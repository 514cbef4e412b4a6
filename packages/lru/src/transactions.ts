import { HeraldError, sqlState, type TransactionRunner } from '@herald/core'
import type { Sql } from 'postgres'

/** The id of the caller's transaction, so its end can be asked about later. */
export async function transactionId(tx: TransactionRunner): Promise<string> {
  const [row] = await tx.query<{ txid: string }>('select pg_current_xact_id()::text as txid', [])
  if (row === undefined)
    throw new HeraldError('CONNECTION_FAILED', 'the transaction id query returned no row')
  return row.txid
}

/**
 * What the server knows of each transaction: `'unknown'` for one too old to tell (its status
 * was truncated away) or never assigned by this server, which callers treat as ended.
 */
export type TransactionStatus = 'in progress' | 'committed' | 'aborted' | 'unknown'

/**
 * The status of each of `txids`, in one statement. `pg_xact_status` raises for an id this
 * server never assigned (after a failover to a standby that was behind, or a restore): then
 * each id is asked alone, so that one such id does not fail the question for all the others.
 */
export async function transactionStatuses(
  sql: Sql<Record<string, unknown>>,
  txids: readonly string[],
): Promise<TransactionStatus[]> {
  try {
    return await statusesOf(sql, txids)
  } catch (error) {
    if (sqlState(error) !== INVALID_PARAMETER_VALUE || txids.length === 0) throw error
    return Promise.all(
      txids.map(async (txid) => {
        try {
          const [status] = await statusesOf(sql, [txid])
          return status ?? 'unknown'
        } catch (single) {
          if (sqlState(single) === INVALID_PARAMETER_VALUE) return 'unknown'
          throw single
        }
      }),
    )
  }
}

/** SQLSTATE of "transaction ID … is in the future". */
const INVALID_PARAMETER_VALUE = '22023'

async function statusesOf(
  sql: Sql<Record<string, unknown>>,
  txids: readonly string[],
): Promise<TransactionStatus[]> {
  const rows = await sql<{ i: number; status: string | null }[]>`
    select i::int, pg_xact_status(t::xid8) as status
    from json_array_elements_text(${JSON.stringify(txids)}::text::json) with ordinality as x(t, i)`
  const statuses = txids.map((): TransactionStatus => 'in progress')
  for (const row of rows) {
    const status = row.status
    statuses[row.i - 1] =
      status === 'in progress' || status === 'committed' || status === 'aborted' ? status : 'unknown'
  }
  return statuses
}
