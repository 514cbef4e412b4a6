import type { TransactionClient } from '@herald/core'
import { PrismaPg } from '@prisma/adapter-pg'
import { PrismaClient } from '@prisma/client'
import { drizzle as drizzleNodePostgres } from 'drizzle-orm/node-postgres'
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js'
import { Kysely, PostgresDialect } from 'kysely'
import { PostgresJSDialect } from 'kysely-postgres-js'
import pg from 'pg'
import postgres from 'postgres'

/**
 * One way an app holds a transaction. `transaction` runs `body` in it, commits when `body`
 * resolves and rolls back when it throws; `body` takes the driver's own object, typed as the
 * driver types it, so passing it on as Herald's `tx` type-checks (or not) with no cast.
 */
export interface NotTransaction {
  readonly what: string
  readonly object: unknown
  /** Connections opened so far by the pool behind `object`, where it has one of its own. */
  readonly ioCount?: () => number
}

export interface Driver {
  readonly name: string
  transaction(body: (tx: TransactionClient) => Promise<void>): Promise<void>
  /** This driver's objects that are not an open transaction, each with what it is. */
  notTransactions(): NotTransaction[] | Promise<NotTransaction[]>
  close(): Promise<void>
}

const unusedPools: pg.Pool[] = []

/** A pool that no test statement uses, so that any connection it opens was opened by Herald. */
function fresh(pool: pg.Pool): pg.Pool {
  unusedPools.push(pool)
  return pool
}

/** Ends the pools `notTransactions` made. */
export async function endUnusedPools(): Promise<void> {
  await Promise.all(unusedPools.splice(0).map((pool) => pool.end()))
}

type DriverFactory = (url: string) => Driver

/** Every driver and ORM Herald takes a transaction from, as an app would set each up. */
export const drivers: Record<string, DriverFactory> = {
  'postgres.js sql.begin': (url) => {
    const sql = postgres(url, { max: 2, onnotice: () => {} })
    return {
      name: 'postgres.js sql.begin',
      transaction: async (body) => {
        await sql.begin((tx) => body(tx))
      },
      notTransactions: () => [{ what: 'a postgres.js pool', object: sql }],
      close: () => sql.end(),
    }
  },

  'postgres.js reserved connection in BEGIN': (url) => {
    const sql = postgres(url, { max: 2, onnotice: () => {} })
    return {
      name: 'postgres.js reserved connection in BEGIN',
      transaction: async (body) => {
        const reserved = await sql.reserve()
        try {
          await reserved`begin`
          try {
            await body(reserved)
          } catch (error) {
            await reserved`rollback`
            throw error
          }
          await reserved`commit`
        } finally {
          reserved.release()
        }
      },
      notTransactions: () => [{ what: 'a postgres.js pool', object: sql }],
      close: () => sql.end(),
    }
  },

  'node-postgres Client': (url) => {
    const client = new pg.Client({ connectionString: url })
    const connected = client.connect()
    return {
      name: 'node-postgres Client',
      transaction: async (body) => {
        await connected
        await client.query('begin')
        try {
          await body(client)
        } catch (error) {
          await client.query('rollback')
          throw error
        }
        await client.query('commit')
      },
      notTransactions: async () => {
        await connected
        return [{ what: 'a node-postgres Client outside BEGIN', object: client }]
      },
      close: async () => {
        await connected
        await client.end()
      },
    }
  },

  'node-postgres PoolClient': (url) => {
    const pool = new pg.Pool({ connectionString: url, max: 2 })
    return {
      name: 'node-postgres PoolClient',
      transaction: async (body) => {
        const client = await pool.connect()
        try {
          await client.query('begin')
          try {
            await body(client)
          } catch (error) {
            await client.query('rollback')
            throw error
          }
          await client.query('commit')
        } finally {
          client.release()
        }
      },
      notTransactions: () => {
        const idle = fresh(new pg.Pool({ connectionString: url, max: 1 }))
        return [{ what: 'a node-postgres Pool', object: idle, ioCount: () => idle.totalCount }]
      },
      close: () => pool.end(),
    }
  },

  'Drizzle on postgres-js': (url) => {
    const sql = postgres(url, { max: 2, onnotice: () => {} })
    const db = drizzlePostgresJs({ client: sql })
    return {
      name: 'Drizzle on postgres-js',
      transaction: (body) => db.transaction((tx) => body(tx)),
      notTransactions: () => [{ what: 'a Drizzle database', object: db }],
      close: () => sql.end(),
    }
  },

  'Drizzle on node-postgres': (url) => {
    const pool = new pg.Pool({ connectionString: url, max: 2 })
    const db = drizzleNodePostgres({ client: pool })
    return {
      name: 'Drizzle on node-postgres',
      transaction: (body) => db.transaction((tx) => body(tx)),
      notTransactions: () => {
        const unused = fresh(new pg.Pool({ connectionString: url, max: 1 }))
        const root = drizzleNodePostgres({ client: unused })
        return [{ what: 'a Drizzle database', object: root, ioCount: () => unused.totalCount }]
      },
      close: () => pool.end(),
    }
  },

  'Kysely PostgresDialect': (url) => {
    const pool = new pg.Pool({ connectionString: url, max: 2 })
    const db = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool }) })
    return {
      name: 'Kysely PostgresDialect',
      transaction: (body) => db.transaction().execute((trx) => body(trx)),
      notTransactions: () => {
        const unused = fresh(new pg.Pool({ connectionString: url, max: 1 }))
        const root = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool: unused }) })
        return [{ what: 'a Kysely instance', object: root, ioCount: () => unused.totalCount }]
      },
      close: () => db.destroy(),
    }
  },

  'Kysely on postgres.js (kysely-postgres-js)': (url) => {
    const sql = postgres(url, { max: 2, onnotice: () => {} })
    const db = new Kysely<Record<string, never>>({ dialect: new PostgresJSDialect({ postgres: sql }) })
    return {
      name: 'Kysely on postgres.js (kysely-postgres-js)',
      transaction: (body) => db.transaction().execute((trx) => body(trx)),
      notTransactions: () => [{ what: 'a Kysely instance', object: db }],
      close: () => db.destroy(),
    }
  },

  'Prisma interactive transaction': (url) => {
    const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) })
    return {
      name: 'Prisma interactive transaction',
      // Prisma's own default is 5 s, shorter than a test that holds a transaction open.
      transaction: (body) => prisma.$transaction((tx) => body(tx), { timeout: 20_000, maxWait: 10_000 }),
      notTransactions: () => [{ what: 'a PrismaClient', object: prisma }],
      close: () => prisma.$disconnect(),
    }
  },

  '{ query(text, params) }': (url) => {
    const pool = new pg.Pool({ connectionString: url, max: 2 })
    return {
      name: '{ query(text, params) }',
      transaction: async (body) => {
        const client = await pool.connect()
        // What an app writes for a driver Herald does not know: statements that resolve to rows.
        const tx = {
          query: async (text: string, params?: unknown[]) =>
            (await client.query<Record<string, unknown>>(text, params)).rows,
        }
        try {
          await client.query('begin')
          try {
            await body(tx)
          } catch (error) {
            await client.query('rollback')
            throw error
          }
          await client.query('commit')
        } finally {
          client.release()
        }
      },
      notTransactions: () => [],
      close: () => pool.end(),
    }
  },
}
