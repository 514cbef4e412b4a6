import { migrationSql } from '@herald/core'
import { stringOption } from '../args.js'
import type { Command } from '../command.js'
import { EXIT } from '../io.js'
import { heraldParts } from '../parts.js'

export const sqlCommand: Command = {
  name: 'sql',
  summary: 'Print the DDL of every Herald table, for your own migrations',
  help: `Usage: herald sql [--schema <name>]

Prints the DDL \`herald migrate\` runs — schema, <schema>.migrations, every part and the rows
recording their versions — as one idempotent script, for teams that run their own migration
tool. Run it in one transaction (psql --single-transaction -f). Needs no database.

Options:
  --schema <name>  Schema of the tables (default: herald)
  -h, --help       This help

Exit: 0, or 2 for a usage error.`,
  options: { schema: { type: 'string' } },
  async run(parsed, io) {
    await Promise.resolve()
    io.stdout(migrationSql({ schema: stringOption(parsed, 'schema') ?? 'herald', parts: heraldParts }))
    return EXIT.ok
  },
}
