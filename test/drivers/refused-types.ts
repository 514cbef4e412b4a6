// Type-level checks, run by `pnpm typecheck`: what is not a transaction does not type-check as
// `tx`. (Every driver's transaction type-checking is shown by drivers.ts, which passes each
// one on with no cast.)
import type { TransactionClient } from '@herald/core'
import type { PrismaClient } from '@prisma/client'
import type { NodePgDatabase } from 'drizzle-orm/node-postgres'
import type { PostgresJsDatabase } from 'drizzle-orm/postgres-js'
import type { Kysely } from 'kysely'
import type pg from 'pg'
import type postgres from 'postgres'

export function notTransactions(
  sql: postgres.Sql,
  pool: pg.Pool,
  drizzleOnPostgresJs: PostgresJsDatabase,
  drizzleOnNodePostgres: NodePgDatabase,
  kysely: Kysely<Record<string, never>>,
  prisma: PrismaClient,
): TransactionClient[] {
  return [
    // @ts-expect-error a postgres.js pool is not a transaction
    sql,
    // @ts-expect-error a node-postgres Pool is not a transaction
    pool,
    // @ts-expect-error a Drizzle database is not a transaction
    drizzleOnPostgresJs,
    // @ts-expect-error a Drizzle database is not a transaction
    drizzleOnNodePostgres,
    // @ts-expect-error a Kysely instance is not a transaction
    kysely,
    // @ts-expect-error a PrismaClient is not a transaction
    prisma,
  ]
}
