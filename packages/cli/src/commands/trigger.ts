import {
  installInvalidationTrigger,
  invalidationTriggerSql,
  listInvalidationTriggers,
  removeInvalidationTrigger,
  type InvalidationTriggerInfo,
  type InvalidationTriggerOptions,
} from '@herald/lru'
import { flag, integerOption, requiredString, stringList, stringOption, type Parsed } from '../args.js'
import { CONNECTION_HELP, columns, type Command } from '../command.js'
import { connectionUrl, openClient } from '../connection.js'
import { EXIT, UsageError } from '../io.js'

const TARGET_HELP = `  --table <name>        The table (not schema-qualified)
  --schema <name>       Its schema (default: public)
  --cache <name>        The InvalidatingCache's name`

export const triggerAddCommand: Command = {
  name: 'trigger add',
  summary: 'Install a trigger so that every write to a table evicts its keys everywhere',
  help: `Usage: herald trigger add --table <name> --cache <name> --key <sql> [options]

Installs statement-level triggers on the table: every INSERT, UPDATE, DELETE (by any client)
sends one invalidation of the keys derived from the old and new rows to the cache on every
instance, at commit; TRUNCATE flushes it. Replaces a trigger of the same table and cache.
The expressions are checked against the table first: a bad one fails here, nothing is created.

--key and --tag are SQL expressions over a row, spliced into the trigger as written: trusted
input, like any DDL. Example:

  herald trigger add --table users --cache users --key "'user:' || id" --tag "'org:' || org_id"

Options:
${TARGET_HELP}
  --key <sql>           A row's cache key (repeat for several keys per row)
  --tag <sql>           A tag to evict (repeatable)
  --channel <name>      The cache's channel (default: cache_invalidation)
  --durable             Also log each message in the durable invalidation log
  --log-schema <name>   Schema of that log (default: herald; implies --durable)
  --flush-above <n>     Above this many keys in one statement, flush instead (default: 100000)
  --print               Print the DDL instead of installing it (needs no database)

${CONNECTION_HELP}

Exit: 0 installed, 1 failed, 2 usage error (including an expression the table refuses).`,
  options: {
    table: { type: 'string' },
    schema: { type: 'string' },
    cache: { type: 'string' },
    key: { type: 'string', multiple: true },
    tag: { type: 'string', multiple: true },
    channel: { type: 'string' },
    durable: { type: 'boolean' },
    'log-schema': { type: 'string' },
    'flush-above': { type: 'string' },
    print: { type: 'boolean' },
  },
  async run(parsed, io) {
    positionalsNone(parsed)
    const options = triggerOptions(parsed)
    // Checks every option before any I/O (a usage error).
    const ddl = invalidationTriggerSql(options)
    if (flag(parsed, 'print')) {
      io.stdout(ddl)
      return EXIT.ok
    }
    const sql = openClient(connectionUrl(parsed, io))
    try {
      const installed = await installInvalidationTrigger(sql, options)
      io.stdout(
        `installed ${installed.function} on ${installed.schema}.${installed.table}: ` +
          `cache ${installed.cache} on channel ${installed.channel}${installed.logSchema === undefined ? '' : ', durable'}\n`,
      )
      return EXIT.ok
    } finally {
      await sql.end({ timeout: 1 })
    }
  },
}

export const triggerRemoveCommand: Command = {
  name: 'trigger remove',
  summary: 'Drop the invalidation trigger of a cache on a table',
  help: `Usage: herald trigger remove --table <name> --cache <name> [--schema <name>]

Drops the triggers and the function that \`herald trigger add\` installed. Removing a trigger
that is not there is not an error (it says so on stderr).

Options:
${TARGET_HELP}

${CONNECTION_HELP}

Exit: 0 removed or absent, 1 failed, 2 usage error.`,
  options: { table: { type: 'string' }, schema: { type: 'string' }, cache: { type: 'string' } },
  async run(parsed, io) {
    positionalsNone(parsed)
    const target = {
      table: requiredString(parsed, 'table'),
      cache: requiredString(parsed, 'cache'),
      ...optional('schema', stringOption(parsed, 'schema')),
    }
    const sql = openClient(connectionUrl(parsed, io))
    try {
      const removed = await removeInvalidationTrigger(sql, target)
      const where = `${target.schema ?? 'public'}.${target.table}`
      if (removed) io.stdout(`removed the invalidation trigger of cache ${target.cache} on ${where}\n`)
      else io.stderr(`no invalidation trigger of cache ${target.cache} on ${where}; nothing to do\n`)
      return EXIT.ok
    } finally {
      await sql.end({ timeout: 1 })
    }
  },
}

export const triggerListCommand: Command = {
  name: 'trigger list',
  summary: 'List the invalidation triggers installed in the database',
  help: `Usage: herald trigger list [--schema <name>] [--table <name>] [--json]

Lists every invalidation trigger (read from the catalog): table, cache, channel, key and tag
expressions, durable log.

Options:
  --schema <name>  Only tables of this schema
  --table <name>   Only this table
  --json           One JSON array, for scripts

${CONNECTION_HELP}

Exit: 0, 1 failed, 2 usage error.`,
  options: { schema: { type: 'string' }, table: { type: 'string' }, json: { type: 'boolean' } },
  async run(parsed, io) {
    positionalsNone(parsed)
    const sql = openClient(connectionUrl(parsed, io))
    try {
      const triggers = await listInvalidationTriggers(sql, {
        ...optional('schema', stringOption(parsed, 'schema')),
        ...optional('table', stringOption(parsed, 'table')),
      })
      if (flag(parsed, 'json')) io.stdout(`${JSON.stringify(triggers, null, 2)}\n`)
      else if (triggers.length === 0) io.stderr('no invalidation triggers\n')
      else io.stdout(`${describeTriggers(triggers)}\n`)
      return EXIT.ok
    } finally {
      await sql.end({ timeout: 1 })
    }
  },
}

function describeTriggers(triggers: readonly InvalidationTriggerInfo[]): string {
  return columns([
    ['TABLE', 'CACHE', 'CHANNEL', 'DURABLE', 'KEYS', 'TAGS'],
    ...triggers.map((trigger) => [
      `${trigger.schema}.${trigger.table}`,
      trigger.cache,
      trigger.channel,
      trigger.logSchema ?? '-',
      trigger.key.join(' ; '),
      trigger.tags.join(' ; ') || '-',
    ]),
  ])
}

function triggerOptions(parsed: Parsed): InvalidationTriggerOptions {
  const keys = stringList(parsed, 'key')
  if (keys.length === 0) throw new UsageError('--key is required (an SQL expression over a row)')
  const tags = stringList(parsed, 'tag')
  const logSchema = stringOption(parsed, 'log-schema')
  const durable = logSchema !== undefined ? { schema: logSchema } : flag(parsed, 'durable')
  return {
    table: requiredString(parsed, 'table'),
    cache: requiredString(parsed, 'cache'),
    key: keys,
    ...(tags.length > 0 && { tags }),
    ...optional('schema', stringOption(parsed, 'schema')),
    ...optional('channel', stringOption(parsed, 'channel')),
    durable,
    flushAboveKeys: integerOption(parsed, 'flush-above', 100_000),
  }
}

function positionalsNone(parsed: Parsed): void {
  if (parsed.positionals.length > 0) {
    throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[0])}`)
  }
}

/** `{ [name]: value }`, or nothing when the value is absent (exactOptionalPropertyTypes). */
function optional<TName extends string>(name: TName, value: string | undefined): { [K in TName]?: string } {
  return (value === undefined ? {} : { [name]: value }) as { [K in TName]?: string }
}
