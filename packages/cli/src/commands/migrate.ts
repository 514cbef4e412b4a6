import { migrate } from '@herald/core'
import { stringOption } from '../args.js'
import { CONNECTION_HELP, columns, type Command } from '../command.js'
import { connectionUrl, openClient } from '../connection.js'
import { EXIT } from '../io.js'
import { heraldParts } from '../parts.js'

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'Create or upgrade every Herald table (idempotent)',
  help: `Usage: herald migrate [--schema <name>] [--url <url>]

Creates every Herald table — the durable invalidation log of @herald/lru, the lock tokens of
@herald/lock — in one schema, recording each part's version in <schema>.migrations. Parts
already at their version are skipped; safe to run from many instances at once (an advisory
lock serializes them). Prints one line per part: applied, current, or newer (the database was
migrated by a later release and is left alone).

Options:
  --schema <name>  Schema of the tables (default: herald)

${CONNECTION_HELP}

Exit: 0 migrated or already current, 1 failed, 2 usage error.`,
  options: { schema: { type: 'string' } },
  async run(parsed, io) {
    const schema = stringOption(parsed, 'schema') ?? 'herald'
    const sql = openClient(connectionUrl(parsed, io))
    try {
      const outcomes = await migrate(sql, { schema, parts: heraldParts })
      io.stdout(
        `${columns(
          outcomes.map((outcome) => [
            outcome.id,
            `v${outcome.version}`,
            outcome.status === 'applied'
              ? outcome.previous === undefined
                ? 'applied'
                : `applied (was v${outcome.previous})`
              : outcome.status === 'current'
                ? 'current'
                : `newer in the database (v${outcome.previous ?? '?'}), left alone`,
          ]),
        )}\n`,
      )
      return EXIT.ok
    } finally {
      await sql.end({ timeout: 1 })
    }
  },
}
