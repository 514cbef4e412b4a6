import { createHash } from 'node:crypto'
import type postgres from 'postgres'

/** The Postgres schema holding the example's tables: `EXAMPLE_SCHEMA`, so several runs can share a server. */
export const SCHEMA = process.env['EXAMPLE_SCHEMA'] ?? 'herald_example_report'
/** The day the report covers. */
export const REPORT_DAY = '2024-06-01'
/** The lock that guards building one day's report, on every instance. */
export const lockName = (day: string): string => `${SCHEMA}:daily-report:${day}`

export interface RegionTotal {
  readonly region: string
  readonly sales: number
  readonly totalCents: number
}

export interface ReportBody {
  readonly day: string
  readonly sales: number
  readonly totalCents: number
  readonly regions: readonly RegionTotal[]
}

export interface StoredReport {
  readonly body: ReportBody
  readonly builtBy: string
  /** The fencing token of the lock it was built under. */
  readonly token: string
  readonly buildMs: number
  /** sha256 of the stored body, to compare what each instance read. */
  readonly sha256: string
}

/** Creates the schema with a day of sales and an empty reports table. */
export async function createTables(sql: postgres.Sql): Promise<void> {
  await sql`drop schema if exists ${sql(SCHEMA)} cascade`
  await sql`create schema ${sql(SCHEMA)}`
  await sql`create table ${sql(`${SCHEMA}.sales`)} (
    id int generated always as identity primary key,
    day date not null,
    region text not null,
    amount_cents int not null
  )`
  await sql`
    insert into ${sql(`${SCHEMA}.sales`)} (day, region, amount_cents)
    select ${REPORT_DAY}::date,
           (array['north', 'south', 'east', 'west'])[1 + i % 4],
           500 + (i * 7919) % 20000
    from generate_series(1, 2000) as i`
  await sql`create table ${sql(`${SCHEMA}.reports`)} (
    day date primary key,
    body jsonb not null,
    built_by text not null,
    token bigint not null,
    build_ms int not null,
    built_at timestamptz not null default now()
  )`
}

export async function dropTables(sql: postgres.Sql): Promise<void> {
  await sql`drop schema if exists ${sql(SCHEMA)} cascade`
}

export async function readReport(sql: postgres.Sql, day: string): Promise<StoredReport | undefined> {
  const [row] = await sql<
    { body: ReportBody; builtBy: string; token: string; buildMs: number; text: string }[]
  >`
    select body, built_by as "builtBy", token::text as token, build_ms as "buildMs", body::text as text
    from ${sql(`${SCHEMA}.reports`)} where day = ${day}`
  if (row === undefined) return undefined
  const { text, ...report } = row
  return { ...report, sha256: createHash('sha256').update(text).digest('hex') }
}

/**
 * The slow part: aggregates the day's sales (after `delayMs`, standing in for a heavy query)
 * and stores the result. Only a newer fencing token may overwrite a stored report, so a
 * builder that lost its lock without noticing cannot clobber a newer one.
 */
export async function buildReport(
  sql: postgres.Sql,
  day: string,
  {
    token,
    builtBy,
    delayMs,
    signal,
  }: { token: bigint; builtBy: string; delayMs: number; signal: AbortSignal },
): Promise<void> {
  const started = performance.now()
  await sql`select pg_sleep(${delayMs / 1000})`
  const regions = await sql<RegionTotal[]>`
    select region, count(*)::int as sales, sum(amount_cents)::int as "totalCents"
    from ${sql(`${SCHEMA}.sales`)} where day = ${day}
    group by region order by region`
  const body: ReportBody = {
    day,
    sales: regions.reduce((sum, region) => sum + region.sales, 0),
    totalCents: regions.reduce((sum, region) => sum + region.totalCents, 0),
    regions: regions.map(({ region, sales, totalCents }) => ({ region, sales, totalCents })),
  }
  // Lost the lock meanwhile (its session died): someone else may be building; stop here.
  signal.throwIfAborted()
  await sql`
    insert into ${sql(`${SCHEMA}.reports`)} (day, body, built_by, token, build_ms)
    values (${day}, ${sql.json(body as unknown as postgres.JSONValue)}, ${builtBy}, ${String(token)},
            ${Math.round(performance.now() - started)})
    on conflict (day) do update
      set body = excluded.body, built_by = excluded.built_by, token = excluded.token,
          build_ms = excluded.build_ms, built_at = now()
      where reports.token < excluded.token`
}

export function formatCents(cents: number): string {
  return (cents / 100).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })
}
