import type { OptionSpecs, Parsed } from './args.js'
import type { CliIo, ExitCode } from './io.js'

/** One `herald` command: its help text, its options, and what it does. */
export interface Command {
  /** As typed: `migrate`, `trigger add`. */
  readonly name: string
  /** One line for `herald --help`. */
  readonly summary: string
  /** The whole `--help` text. */
  readonly help: string
  readonly options: OptionSpecs
  run(parsed: Parsed, io: CliIo): Promise<ExitCode>
}

/** Lines shared by every command's help. */
export const CONNECTION_HELP = `Connection:
  --url <url>     postgres://user:password@host:port/database
                  (default: DATABASE_URL, else the PG* environment variables)
  -h, --help      This help`

/** Aligned columns, for tables on a terminal. */
export function columns(rows: readonly (readonly string[])[]): string {
  const widths: number[] = []
  for (const row of rows)
    row.forEach((cell, index) => (widths[index] = Math.max(widths[index] ?? 0, cell.length)))
  return rows
    .map((row) =>
      row
        .map((cell, index) => (index === row.length - 1 ? cell : cell.padEnd(widths[index] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
