import type { ReservedSql, Sql, TransactionSql } from 'postgres'
import { HeraldError } from './errors.js'

/**
 * node-postgres `Client` or `PoolClient` on which the app ran `BEGIN`, or anything else that
 * runs one statement with `$1`-style parameters and resolves to its rows (an array, or an
 * object with `rows`).
 */
export interface QueryableTransaction {
  query(text: string, values?: unknown[]): PromiseLike<unknown>
  /** A node-postgres `Pool` has these, and is not a transaction: refused. */
  readonly totalCount?: never
}

/** Drizzle's `db.transaction(async (tx) => ...)` `tx`, on the postgres-js or node-postgres driver. */
export interface DrizzleTransaction {
  readonly _: { readonly session: unknown }
  /** Only a transaction has it, so a root `db` does not type-check. */
  rollback(): unknown
}

/** Kysely's `db.transaction().execute(async (trx) => ...)` `trx`, or a controlled transaction. */
export interface KyselyTransaction {
  readonly isTransaction: true
  executeQuery(query: never, ...rest: never[]): PromiseLike<unknown>
}

/** Prisma's interactive transaction client, `prisma.$transaction(async (tx) => ...)`'s `tx`. */
export interface PrismaTransaction {
  $queryRawUnsafe(query: string, ...values: never[]): PromiseLike<unknown>
  /** The root client has it (a transaction client has not), and is not a transaction: refused. */
  readonly $disconnect?: never
}

/**
 * The application's open transaction, as its driver or ORM hands it over, with no wrapper:
 * postgres.js 3 or 4 (`sql.begin`'s `tx`, or a reserved connection inside BEGIN), node-postgres
 * (`Client`/`PoolClient` after BEGIN), Drizzle, Kysely, Prisma, or any `{ query(text, params) }`.
 * Herald's statements in it are delivered, and take effect, only if it commits. A
 * {@link TransactionRunner} from {@link toTransactionRunner} is accepted too.
 */
export type TransactionClient =
  | TransactionRunner
  | TransactionSql<Record<string, unknown>>
  | ReservedSql<Record<string, unknown>>
  | QueryableTransaction
  | DrizzleTransaction
  | KyselyTransaction
  | PrismaTransaction

/** The driver a {@link TransactionRunner} was made for; in messages and errors. */
export type TransactionDriver = 'postgres.js' | 'node-postgres' | 'drizzle' | 'kysely' | 'prisma' | 'query'

type Rows = Promise<Record<string, unknown>[]>
type Query = (text: string, params: readonly unknown[]) => Rows

/**
 * One way to run a statement in whatever transaction the app passed. Herald's statements in a
 * caller's transaction return text columns only, so that every driver hands back the same
 * values (Prisma turns numerics into Decimals, drivers differ on bigint and timestamps).
 */
export class TransactionRunner {
  readonly driver: TransactionDriver
  readonly #query: Query

  /** @internal Made by {@link toTransactionRunner}, or by Herald for a session it owns. */
  constructor(driver: TransactionDriver, query: Query) {
    this.driver = driver
    this.#query = query
  }

  /** Runs one statement (`$1`, `$2`, ... placeholders) and resolves to its rows. */
  query<TRow extends Record<string, unknown>>(text: string, params: readonly unknown[]): Promise<TRow[]> {
    return this.#query(text, params) as Promise<TRow[]>
  }
}

/**
 * Runs statements on a postgres.js client of Herald's own (a store's client, the lock session)
 * through the same interface as a caller's transaction, so a statement is written once for both.
 * On the lock session it also keeps a release message queued behind the unlock before it.
 */
export function clientRunner(sql: Sql<Record<string, unknown>>): TransactionRunner {
  return postgresJsRunner(sql)
}

/**
 * The runner for `tx`, or `INVALID_OPTION` (thrown, before any I/O) for an object that is not
 * an open transaction of a driver Herald knows. Nothing is imported: each driver is recognised
 * by the shape of the object the app passed.
 */
export function toTransactionRunner(tx: unknown, action = 'this call'): TransactionRunner {
  if (tx instanceof TransactionRunner) return tx
  const refuse = (why: string): never => {
    throw new HeraldError('INVALID_OPTION', `\`tx\` of ${action}: ${why}`, {
      details: { accepted: ACCEPTED },
    })
  }
  if (typeof tx === 'function') {
    const sql = tx as unknown as Partial<Record<'unsafe' | 'savepoint' | 'release', unknown>>
    if (typeof sql.unsafe !== 'function') return refuse(`a function is not a transaction; ${ACCEPTED}`)
    // sql.begin's `tx` has savepoint(), a reserved connection has release(); a pool has neither.
    if (typeof sql.savepoint !== 'function' && typeof sql.release !== 'function') {
      return refuse(
        'this postgres.js client is a pool, not a transaction: pass the `tx` of sql.begin(async (tx) => ...)',
      )
    }
    return postgresJsRunner(tx as unknown as Sql<Record<string, unknown>>)
  }
  if (typeof tx !== 'object' || tx === null)
    return refuse(`got ${tx === null ? 'null' : typeof tx}; ${ACCEPTED}`)
  const candidate = tx as Record<string, unknown>

  const drizzle = candidate['_'] as { session?: { client?: unknown } } | undefined
  if (typeof drizzle === 'object' && drizzle !== null && typeof drizzle.session === 'object') {
    if (typeof candidate['rollback'] !== 'function') {
      return refuse(
        'this Drizzle database is not a transaction: pass the `tx` of db.transaction(async (tx) => ...)',
      )
    }
    const client = drizzle.session?.client
    if (client === undefined) {
      return refuse(
        'this Drizzle driver keeps no client Herald can use; pass an object with query(text, params)',
      )
    }
    const inner = toTransactionRunner(client, action)
    return new TransactionRunner('drizzle', (text, params) => inner.query(text, params))
  }

  if (typeof candidate['executeQuery'] === 'function' && typeof candidate['isTransaction'] === 'boolean') {
    if (candidate['isTransaction'] !== true) {
      return refuse(
        'this Kysely instance is not a transaction: pass the `trx` of db.transaction().execute(async (trx) => ...)',
      )
    }
    const executeQuery = (candidate['executeQuery'] as (query: unknown) => Promise<{ rows?: unknown }>).bind(
      tx,
    )
    return new TransactionRunner('kysely', async (text, params) =>
      rowsOf((await executeQuery(kyselyQuery(text, params))).rows, 'kysely'),
    )
  }

  if (typeof candidate['$queryRawUnsafe'] === 'function') {
    // Prisma's transaction client hides $connect and $disconnect, but keeps $transaction.
    if (typeof candidate['$disconnect'] === 'function') {
      return refuse(
        'this PrismaClient is not a transaction: pass the `tx` of prisma.$transaction(async (tx) => ...)',
      )
    }
    const queryRaw = (
      candidate['$queryRawUnsafe'] as (text: string, ...values: unknown[]) => Promise<unknown>
    ).bind(tx)
    return new TransactionRunner('prisma', async (text, params) =>
      rowsOf(await queryRaw(text, ...params), 'prisma'),
    )
  }

  if (typeof candidate['query'] === 'function') {
    if (typeof candidate['totalCount'] === 'number' && typeof candidate['idleCount'] === 'number') {
      return refuse(
        'a node-postgres Pool is not a transaction: pass the client of `const client = await pool.connect()` after client.query("begin")',
      )
    }
    const status =
      typeof candidate['getTransactionStatus'] === 'function'
        ? (candidate['getTransactionStatus'] as () => unknown).call(tx)
        : undefined
    // node-postgres tracks the server's ReadyForQuery status: 'I' is idle, outside any transaction.
    if (status === 'I') {
      return refuse('this node-postgres client has no open transaction: run client.query("begin") first')
    }
    const query = (candidate['query'] as (text: string, values: unknown[]) => Promise<unknown>).bind(tx)
    const driver: TransactionDriver = status === undefined ? 'query' : 'node-postgres'
    return new TransactionRunner(driver, async (text, params) => {
      const result = await query(text, [...params])
      return rowsOf(Array.isArray(result) ? result : (result as { rows?: unknown } | undefined)?.rows, driver)
    })
  }
  return refuse(ACCEPTED)
}

const ACCEPTED =
  'expected an open transaction: postgres.js sql.begin() `tx` (or a reserved connection in BEGIN), a node-postgres client after BEGIN, a Drizzle or Kysely transaction, a Prisma interactive transaction client, or an object with query(text, params)'

function postgresJsRunner(sql: Sql<Record<string, unknown>>): TransactionRunner {
  return new TransactionRunner(
    'postgres.js',
    async (text, params) => await sql.unsafe(text, params as never[]),
  )
}

function rowsOf(rows: unknown, driver: TransactionDriver): Record<string, unknown>[] {
  if (Array.isArray(rows)) return rows as Record<string, unknown>[]
  throw new HeraldError(
    'CONNECTION_FAILED',
    `the ${driver} transaction returned no rows array for Herald's statement`,
  )
}

/**
 * What Kysely's `CompiledQuery.raw(text, params)` builds, made here so that Kysely is never
 * imported: its executor reads `sql` and `parameters`, plugins see a raw node.
 */
function kyselyQuery(text: string, params: readonly unknown[]): unknown {
  const queryId = { queryId: `herald-${(nextKyselyQueryId++).toString(36)}` }
  return Object.freeze({
    sql: text,
    parameters: Object.freeze([...params]),
    query: Object.freeze({
      kind: 'RawNode',
      sqlFragments: Object.freeze([text]),
      parameters: Object.freeze([]),
    }),
    queryId,
  })
}
let nextKyselyQueryId = 0
