import { HeraldError, type TransactionClient } from '@herald/core'
import type { Sql } from 'postgres'

/** The id of the caller's transaction, so its end can be asked about later. */
export async function transactionId(tx: TransactionClient): Promise<string> {
  const run = tx as unknown as Sql<Record<string, unknown>>
  const [row] = await run<{ txid: string }[]>`select pg_current_xact_id()::text as txid`
  if (row === undefined)
    throw new HeraldError('CONNECTION_FAILED', 'the transaction id query returned no row')
  return row.txid
}

/** Which of `txids` have ended (committed, rolled back, or too old to know). */
export async function endedTransactions(
  sql: Sql<Record<string, unknown>>,
  txids: readonly string[],
): Promise<boolean[]> {
  const rows = await sql<{ i: number; status: string | null }[]>`
    select i::int, pg_xact_status(t::xid8) as status
    from json_array_elements_text(${JSON.stringify(txids)}::text::json) with ordinality as x(t, i)`
  const ended = txids.map(() => false)
  for (const row of rows) ended[row.i - 1] = row.status !== 'in progress'
  return ended
}
