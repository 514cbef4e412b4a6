import { flag, stringOption } from '../args.js'
import { CONNECTION_HELP, columns, type Command } from '../command.js'
import { connectionUrl, openClient } from '../connection.js'
import { EXIT } from '../io.js'

interface ConnectionRow {
  readonly applicationName: string
  readonly state: string
  readonly count: number
  readonly oldestSeconds: number
}

interface TableRow {
  readonly table: string
  readonly rows: number
  readonly bytes: number
}

interface LogRow {
  readonly cache: string
  readonly rows: number
  readonly flushes: number
  readonly oldest: string
  readonly newest: string
}

export const statsCommand: Command = {
  name: 'stats',
  summary: 'Show Herald activity: connections, notification queue, table sizes',
  help: `Usage: herald stats [--schema <name>] [--json]

Shows what Herald does on this server right now:
  connections  sessions whose application_name starts with "herald" (listeners, publishers,
               lock holders, this CLI), by name and state
  queue        pg_notification_queue_usage()
  tables       rows and size of every table in the Herald schema
  log          the durable invalidation log, per cache: rows, flushes, oldest and newest

Options:
  --schema <name>  Schema of the Herald tables (default: herald)
  --json           One JSON object, for scripts and monitoring

${CONNECTION_HELP}

Exit: 0, 1 failed, 2 usage error.`,
  options: { schema: { type: 'string' }, json: { type: 'boolean' } },
  async run(parsed, io) {
    const schema = stringOption(parsed, 'schema') ?? 'herald'
    const sql = openClient(connectionUrl(parsed, io))
    try {
      const connections = await sql<ConnectionRow[]>`
        select application_name as "applicationName", coalesce(state, 'unknown') as state, count(*)::int as count,
               coalesce(extract(epoch from now() - min(backend_start)), 0)::float8 as "oldestSeconds"
        from pg_stat_activity
        where application_name like 'herald%' and pid <> pg_backend_pid()
        group by 1, 2 order by 1, 2`
      const [queue] = await sql<{ usage: number }[]>`select pg_notification_queue_usage()::float8 as usage`
      const tables = await sql<TableRow[]>`
        select c.relname as table, coalesce(s.n_live_tup, 0)::float8 as rows,
               pg_total_relation_size(c.oid)::float8 as bytes
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        left join pg_stat_user_tables s on s.relid = c.oid
        where n.nspname = ${schema} and c.relkind in ('r', 'p')
        order by 1`
      let log: LogRow[] = []
      if (tables.some((table) => table.table === 'cache_invalidations')) {
        log = await sql<LogRow[]>`
          select cache, count(*)::float8 as rows, count(*) filter (where flush)::float8 as flushes,
                 min(created_at)::text as oldest, max(created_at)::text as newest
          from ${sql(schema)}.cache_invalidations group by cache order by cache`
      }
      const report = { connections, queueUsage: queue?.usage ?? 0, schema, tables, log }
      if (flag(parsed, 'json')) {
        io.stdout(`${JSON.stringify(report, null, 2)}\n`)
        return EXIT.ok
      }
      const sections: string[] = []
      sections.push(
        connections.length === 0
          ? 'connections: none named herald*'
          : `connections:\n${indent(
              columns([
                ['APPLICATION', 'STATE', 'COUNT', 'OLDEST'],
                ...connections.map((row) => [
                  row.applicationName,
                  row.state,
                  String(row.count),
                  duration(row.oldestSeconds),
                ]),
              ]),
            )}`,
      )
      sections.push(`queue: pg_notification_queue_usage() = ${((queue?.usage ?? 0) * 100).toFixed(2)}%`)
      sections.push(
        tables.length === 0
          ? `tables: none in schema ${schema}`
          : `tables (${schema}; live rows from the statistics):\n${indent(
              columns([
                ['TABLE', 'ROWS', 'SIZE'],
                ...tables.map((row) => [row.table, String(Math.round(row.rows)), bytes(row.bytes)]),
              ]),
            )}`,
      )
      if (log.length > 0) {
        sections.push(
          `durable invalidation log:\n${indent(
            columns([
              ['CACHE', 'ROWS', 'FLUSHES', 'OLDEST', 'NEWEST'],
              ...log.map((row) => [row.cache, String(row.rows), String(row.flushes), row.oldest, row.newest]),
            ]),
          )}`,
        )
      }
      io.stdout(`${sections.join('\n\n')}\n`)
      return EXIT.ok
    } finally {
      await sql.end({ timeout: 1 })
    }
  },
}

function indent(text: string): string {
  return text.replace(/^/gm, '  ')
}

function bytes(count: number): string {
  if (count < 1024) return `${count} B`
  if (count < 1024 ** 2) return `${(count / 1024).toFixed(1)} kB`
  if (count < 1024 ** 3) return `${(count / 1024 ** 2).toFixed(1)} MB`
  return `${(count / 1024 ** 3).toFixed(1)} GB`
}

function duration(seconds: number): string {
  if (seconds < 60) return `${Math.round(seconds)} s`
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`
  if (seconds < 86_400) return `${(seconds / 3600).toFixed(1)} h`
  return `${(seconds / 86_400).toFixed(1)} d`
}
