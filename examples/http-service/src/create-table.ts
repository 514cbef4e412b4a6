/**
 * Creates the example's schema and users table (dropping any previous one) on DATABASE_URL,
 * for running src/server.ts instances by hand.
 *
 *   DATABASE_URL=postgres://… pnpm create-table
 */
import postgres from 'postgres'
import { createUsers, SCHEMA } from './users.js'

const url = process.env['DATABASE_URL']
if (!url) {
  process.stderr.write('create-table.ts needs DATABASE_URL\n')
  process.exit(2)
}
const sql = postgres(url, { max: 1, onnotice: () => {} })
try {
  await createUsers(sql)
  process.stdout.write(`created ${SCHEMA}.users with 3 users\n`)
} finally {
  await sql.end({ timeout: 2 })
}
