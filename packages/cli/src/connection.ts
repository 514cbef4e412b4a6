import postgres, { type Sql } from 'postgres'
import type { CliIo } from './io.js'
import { UsageError } from './io.js'
import { stringOption, type Parsed } from './args.js'

/** Seconds to wait for a connection before giving up. */
const CONNECT_TIMEOUT_S = 10

/**
 * The connection string: `--url`, else `DATABASE_URL`, else the `PG*` variables (postgres.js
 * reads PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) when at least PGHOST or PGDATABASE
 * is set; anything else is a usage error.
 */
export function connectionUrl(parsed: Parsed, io: CliIo): string | undefined {
  const url = stringOption(parsed, 'url') ?? io.env['DATABASE_URL']
  if (url !== undefined && url !== '') return url
  if (io.env['PGHOST'] || io.env['PGDATABASE']) return undefined
  throw new UsageError('no database: give --url <postgres://...> or set DATABASE_URL')
}

/** A small client of the CLI's own, found in pg_stat_activity as `herald-cli`. */
export function openClient(
  url: string | undefined,
  options: { applicationName?: string; onnotify?: (channel: string, payload: string) => void } = {},
): Sql<Record<string, unknown>> {
  const settings = {
    max: 1,
    onnotice: () => {},
    fetch_types: false,
    connect_timeout: CONNECT_TIMEOUT_S,
    connection: { application_name: options.applicationName ?? 'herald-cli' },
    // Not in postgres.js's types, but honoured: notifications for LISTENs run on this client.
    ...(options.onnotify && { onnotify: options.onnotify }),
  } as postgres.Options<Record<string, postgres.PostgresType>>
  return (url === undefined ? postgres(settings) : postgres(url, settings)) as Sql<Record<string, unknown>>
}

/** The connection string without its password, for output. */
export function redactUrl(url: string | undefined): string {
  if (url === undefined) return '(PG* environment variables)'
  try {
    const parsed = new URL(url)
    if (parsed.password !== '') parsed.password = '***'
    return parsed.toString()
  } catch {
    return '(unparsable connection string)'
  }
}
