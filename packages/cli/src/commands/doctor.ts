import { randomBytes } from 'node:crypto'
import type { Sql } from 'postgres'
import { listInvalidationTriggers } from '@herald/lru'
import { flag, integerOption, stringOption } from '../args.js'
import { CONNECTION_HELP, errorMessage, type Command } from '../command.js'
import { connectionUrl, openClient, redactUrl } from '../connection.js'
import { EXIT } from '../io.js'
import { heraldParts } from '../parts.js'

/** Oldest server Herald supports: `pg_current_xact_id()` and `xid8` (the durable log) are 13+. */
const MIN_SERVER_VERSION = 130_000
/** A queue this full means some listener is not reading; at 100% every NOTIFY fails. */
const QUEUE_FAIL_AT = 0.5

/** Triggers named in the report; `herald trigger list` shows them all. */
const SHOWN_TRIGGERS = 5

type Status = 'ok' | 'warn' | 'fail' | 'info'

interface Check {
  readonly name: string
  readonly status: Status
  readonly detail: string
}

export const doctorCommand: Command = {
  name: 'doctor',
  summary: 'Check that this database can carry Herald (exit 1 if not)',
  help: `Usage: herald doctor [--json] [--timeout-ms <ms>] [--schema <name>]

Checks, in order:
  connection  the server answers
  server      PostgreSQL ${MIN_SERVER_VERSION / 10_000} or later
  role        a primary: a hot standby refuses LISTEN and NOTIFY
  listen      LISTEN, then NOTIFY from the same session, is heard within --timeout-ms, and
              the statements ran on one server session: a transaction pooler (PgBouncer in
              transaction mode) fails this, so the listener needs a direct URL
  queue       pg_notification_queue_usage() below ${QUEUE_FAIL_AT * 100}% (a listener that stopped reading fills it)
and reports, without failing: listener sessions and the channels seen in their last
statements (pg_stat_activity), Herald tables and their versions, invalidation triggers.

Options:
  --timeout-ms <ms>  How long the LISTEN probe waits for its own NOTIFY (default: 2000)
  --schema <name>    Schema of the Herald tables (default: herald)
  --json             {"ok": boolean, "checks": [{"name","status","detail"}]}

${CONNECTION_HELP}

Exit: 0 every check passed (warnings allowed), 1 a check failed, 2 usage error.`,
  options: { json: { type: 'boolean' }, 'timeout-ms': { type: 'string' }, schema: { type: 'string' } },
  async run(parsed, io) {
    const url = connectionUrl(parsed, io)
    const timeoutMs = integerOption(parsed, 'timeout-ms', 2_000)
    const schema = stringOption(parsed, 'schema') ?? 'herald'
    const checks: Check[] = []
    const sql = openClient(url, { applicationName: 'herald-doctor' })
    try {
      await diagnose(sql, url, { timeoutMs, schema }, checks)
    } finally {
      await sql.end({ timeout: 1 })
    }
    const ok = checks.every((check) => check.status !== 'fail')
    if (flag(parsed, 'json')) io.stdout(`${JSON.stringify({ ok, checks }, null, 2)}\n`)
    else {
      const width = Math.max(...checks.map((check) => check.name.length))
      for (const check of checks)
        io.stdout(`${label(check.status)} ${check.name.padEnd(width)}  ${check.detail}\n`)
    }
    return ok ? EXIT.ok : EXIT.failure
  },
}

function label(status: Status): string {
  return { ok: '[ ok ]', warn: '[warn]', fail: '[FAIL]', info: '[info]' }[status]
}

async function diagnose(
  sql: Sql<Record<string, unknown>>,
  url: string | undefined,
  options: { timeoutMs: number; schema: string },
  checks: Check[],
): Promise<void> {
  let server: { version: string; num: number; standby: boolean; user: string; database: string }
  try {
    const [row] = await sql<(typeof server)[]>`
      select current_setting('server_version') as version,
             current_setting('server_version_num')::int as num,
             pg_is_in_recovery() as standby, current_user as user, current_database() as database`
    if (row === undefined) throw new Error('the server answered no row')
    server = row
  } catch (error) {
    checks.push({ name: 'connection', status: 'fail', detail: `${redactUrl(url)}: ${errorMessage(error)}` })
    return
  }
  checks.push({
    name: 'connection',
    status: 'ok',
    detail: `${redactUrl(url)} (database ${server.database}, role ${server.user})`,
  })
  checks.push(
    server.num >= MIN_SERVER_VERSION
      ? { name: 'server', status: 'ok', detail: `PostgreSQL ${server.version}` }
      : {
          name: 'server',
          status: 'fail',
          detail: `PostgreSQL ${server.version}: Herald needs ${MIN_SERVER_VERSION / 10_000} or later`,
        },
  )
  if (server.standby) {
    checks.push({
      name: 'role',
      status: 'fail',
      detail: 'hot standby (in recovery): LISTEN and NOTIFY need the primary; point Herald at it',
    })
  } else {
    checks.push({ name: 'role', status: 'ok', detail: 'primary' })
    checks.push(await probeListen(url, options.timeoutMs))
  }
  checks.push(await queueCheck(sql))
  checks.push(await listenersCheck(sql))
  checks.push(await tablesCheck(sql, options.schema))
  checks.push(await triggersCheck(sql))
}

/**
 * LISTEN, then NOTIFY from the same client, on a session of its own. Through a transaction
 * pooler each statement may run on another server session: the LISTEN stays behind on one,
 * the NOTIFY is delivered there, and this client never hears it (the backend pids show it).
 */
async function probeListen(url: string | undefined, timeoutMs: number): Promise<Check> {
  const channel = `herald_doctor_${randomBytes(6).toString('hex')}`
  let heard: (() => void) | undefined
  const heardPromise = new Promise<void>((resolve) => (heard = resolve))
  const probe = openClient(url, {
    applicationName: 'herald-doctor-probe',
    onnotify: (name) => {
      if (name === channel) heard?.()
    },
  })
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    const pids: number[] = []
    const pid = async (): Promise<void> => {
      const [row] = await probe<{ pid: number }[]>`select pg_backend_pid() as pid`
      if (row !== undefined) pids.push(row.pid)
    }
    await pid()
    await probe.unsafe(`listen "${channel}"`)
    await pid()
    const started = performance.now()
    await probe`select pg_notify(${channel}, 'probe')`
    const timedOut = new Promise<'timeout'>(
      (resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)),
    )
    const outcome = await Promise.race([heardPromise.then(() => 'heard' as const), timedOut])
    const elapsedMs = Math.round(performance.now() - started)
    await pid()
    await probe.unsafe(`unlisten "${channel}"`).catch(() => {})
    const sessions = new Set(pids)
    const pooled =
      sessions.size > 1
        ? `; its statements ran on ${sessions.size} server sessions (pids ${[...sessions].join(', ')})`
        : ''
    if (outcome === 'heard' && sessions.size === 1) {
      return {
        name: 'listen',
        status: 'ok',
        detail: `heard its own NOTIFY in ${elapsedMs} ms on one session (pid ${pids[0] ?? '?'}): no transaction pooler in the way`,
      }
    }
    return {
      name: 'listen',
      status: 'fail',
      detail:
        (outcome === 'heard'
          ? 'heard its own NOTIFY'
          : `LISTEN did not hear its own NOTIFY within ${timeoutMs} ms`) +
        `${pooled}: a transaction pooler (PgBouncer in transaction mode, Supavisor, RDS Proxy) seems in the way; ` +
        'give Herald a direct or session-mode URL for its listener (listenConnection)',
    }
  } catch (error) {
    return { name: 'listen', status: 'fail', detail: `LISTEN probe failed: ${errorMessage(error)}` }
  } finally {
    if (timer !== undefined) clearTimeout(timer)
    await probe.end({ timeout: 1 })
  }
}

async function queueCheck(sql: Sql<Record<string, unknown>>): Promise<Check> {
  try {
    const [row] = await sql<{ usage: number }[]>`select pg_notification_queue_usage()::float8 as usage`
    const usage = row?.usage ?? 0
    const detail = `pg_notification_queue_usage() = ${(usage * 100).toFixed(2)}%`
    if (usage >= QUEUE_FAIL_AT) {
      return {
        name: 'queue',
        status: 'fail',
        detail: `${detail}: a listening session is not reading (idle in transaction?); at 100% every NOTIFY fails`,
      }
    }
    return { name: 'queue', status: usage > 0.1 ? 'warn' : 'ok', detail }
  } catch (error) {
    return { name: 'queue', status: 'fail', detail: errorMessage(error) }
  }
}

/** Matches each `LISTEN <channel>` in a statement's text, quoted or not. */
const LISTEN_PATTERN = /\blisten\s+("(?:[^"]|"")+"|[^\s;]+)/gi

async function listenersCheck(sql: Sql<Record<string, unknown>>): Promise<Check> {
  try {
    const rows = await sql<{ name: string; query: string }[]>`
      select coalesce(nullif(application_name, ''), '(no application_name)') as name, coalesce(query, '') as query
      from pg_stat_activity
      where backend_type = 'client backend' and pid <> pg_backend_pid()
        and (application_name like '%listener' or query ~* '^\s*listen\s')`
    if (rows.length === 0) {
      return {
        name: 'listeners',
        status: 'info',
        detail: 'no listener sessions (application_name *listener, or a LISTEN as last statement)',
      }
    }
    const sessions = new Map<string, number>()
    const channels = new Map<string, number>()
    for (const row of rows) {
      sessions.set(row.name, (sessions.get(row.name) ?? 0) + 1)
      for (const match of row.query.matchAll(LISTEN_PATTERN)) {
        const raw = match[1] ?? ''
        const name = raw.startsWith('"') ? raw.slice(1, -1).replaceAll('""', '"') : raw.toLowerCase()
        channels.set(name, (channels.get(name) ?? 0) + 1)
      }
    }
    const list = (map: Map<string, number>): string =>
      [...map].map(([name, count]) => (count === 1 ? name : `${name} ×${count}`)).join(', ')
    return {
      name: 'listeners',
      status: 'info',
      detail:
        `${rows.length} session${rows.length === 1 ? '' : 's'}: ${list(sessions)}` +
        (channels.size === 0 ? '' : `; channels in their last statements: ${list(channels)}`) +
        ' (Postgres shows other sessions’ channels only that way)',
    }
  } catch (error) {
    return { name: 'listeners', status: 'warn', detail: `pg_stat_activity: ${errorMessage(error)}` }
  }
}

async function tablesCheck(sql: Sql<Record<string, unknown>>, schema: string): Promise<Check> {
  try {
    const table = `"${schema.replaceAll('"', '""')}".migrations`
    const [exists] = await sql<{ found: boolean }[]>`select to_regclass(${table}) is not null as found`
    if (exists?.found !== true) {
      return {
        name: 'tables',
        status: 'info',
        detail: `${schema}.migrations not found: not migrated (components create their tables on first use; \`herald migrate\` creates them all)`,
      }
    }
    const rows = await sql<{ part: string; version: number }[]>`
      select part, max(version)::int as version from ${sql.unsafe(table)} group by part order by part`
    const applied = new Map(rows.map((row) => [row.part, row.version]))
    const behind = heraldParts.filter((part) => (applied.get(part.id) ?? 0) < part.version)
    return {
      name: 'tables',
      status: behind.length === 0 ? 'ok' : 'warn',
      detail:
        `${schema}: ${rows.map((row) => `${row.part} v${row.version}`).join(', ') || 'nothing applied'}` +
        (behind.length === 0
          ? ''
          : `; to apply: ${behind.map((part) => `${part.id} v${part.version}`).join(', ')} (herald migrate)`),
    }
  } catch (error) {
    return { name: 'tables', status: 'warn', detail: errorMessage(error) }
  }
}

async function triggersCheck(sql: Sql<Record<string, unknown>>): Promise<Check> {
  try {
    const triggers = await listInvalidationTriggers(sql)
    return {
      name: 'triggers',
      status: 'info',
      detail:
        triggers.length === 0
          ? 'no invalidation triggers'
          : `${triggers.length} invalidation trigger${triggers.length === 1 ? '' : 's'}: ` +
            triggers
              .slice(0, SHOWN_TRIGGERS)
              .map((trigger) => `${trigger.schema}.${trigger.table} → ${trigger.cache}`)
              .join(', ') +
            (triggers.length > SHOWN_TRIGGERS ? `, … (herald trigger list)` : ''),
    }
  } catch (error) {
    return { name: 'triggers', status: 'warn', detail: errorMessage(error) }
  }
}
