import type postgres from 'postgres'

export interface User {
  readonly id: number
  readonly name: string
  readonly email: string
}

/** The Postgres schema holding the example's table: `EXAMPLE_SCHEMA`, so several runs can share a server. */
export const SCHEMA = process.env['EXAMPLE_SCHEMA'] ?? 'herald_example_http'

/** The cache key of a user: what `getOrLoad` stores under and `invalidate` evicts. */
export const userKey = (id: number): string => `user:${id}`

const SEED: readonly Omit<User, 'id'>[] = [
  { name: 'Ada', email: 'ada@example.com' },
  { name: 'Grace', email: 'grace@example.com' },
  { name: 'Edsger', email: 'edsger@example.com' },
]

/** Creates the schema and its users table afresh, with a few users. */
export async function createUsers(sql: postgres.Sql): Promise<void> {
  await sql`drop schema if exists ${sql(SCHEMA)} cascade`
  await sql`create schema ${sql(SCHEMA)}`
  await sql`create table ${sql(`${SCHEMA}.users`)} (
    id int generated always as identity primary key,
    name text not null,
    email text not null
  )`
  await sql`insert into ${sql(`${SCHEMA}.users`)} ${sql(SEED.map((user) => ({ ...user })))}`
}

export async function dropUsers(sql: postgres.Sql): Promise<void> {
  await sql`drop schema if exists ${sql(SCHEMA)} cascade`
}
