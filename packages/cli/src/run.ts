import { createRequire } from 'node:module'
import { isHeraldError } from '@herald/core'
import { parse } from './args.js'
import { errorMessage, type Command } from './command.js'
import { doctorCommand } from './commands/doctor.js'
import { listenCommand } from './commands/listen.js'
import { migrateCommand } from './commands/migrate.js'
import { notifyCommand } from './commands/notify.js'
import { sqlCommand } from './commands/sql.js'
import { statsCommand } from './commands/stats.js'
import { triggerAddCommand, triggerListCommand, triggerRemoveCommand } from './commands/trigger.js'
import { CommandFailed, EXIT, UsageError, type CliIo, type ExitCode } from './io.js'

const COMMANDS: readonly Command[] = [
  migrateCommand,
  sqlCommand,
  triggerAddCommand,
  triggerRemoveCommand,
  triggerListCommand,
  listenCommand,
  notifyCommand,
  doctorCommand,
  statsCommand,
]

/** Input mistakes a command finds before (or instead of) doing anything: exit 2, like a usage error. */
const INPUT_ERRORS = new Set(['INVALID_OPTION', 'INVALID_CHANNEL', 'PAYLOAD_INVALID'])

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((command) => command.name.length))
  return `Usage: herald <command> [options]

Herald broadcasts cache invalidations, lock releases and config changes over PostgreSQL
LISTEN/NOTIFY. This tool sets up and inspects it.

Commands:
${COMMANDS.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`).join('\n')}

Every command takes --url <url> (default: DATABASE_URL) and --help.
Exit codes: 0 ok, 1 failure (for doctor: a check failed), 2 usage error.
`
}

const TRIGGER_HELP = `Usage: herald trigger <add|remove|list> [options]

${COMMANDS.filter((command) => command.name.startsWith('trigger '))
  .map((command) => `  ${command.name.padEnd(14)}  ${command.summary}`)
  .join('\n')}

Run \`herald trigger <add|remove|list> --help\` for each one's options.
`

/**
 * Runs one `herald` command line (without the `node herald` part) and resolves to its exit
 * code; never rejects. Output goes to `io`, so tests and other tools can embed it.
 */
export async function run(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const [first, second] = argv
  if (first === undefined) {
    io.stderr(mainHelp())
    return EXIT.usage
  }
  if (first === '--help' || first === '-h' || first === 'help') {
    const topic = first === 'help' ? find(argv.slice(1)) : undefined
    io.stdout(topic?.help.concat('\n') ?? (second === 'trigger' ? TRIGGER_HELP : mainHelp()))
    return EXIT.ok
  }
  if (first === '--version' || first === '-v') {
    io.stdout(`${version()}\n`)
    return EXIT.ok
  }
  if (first === 'trigger' && (second === undefined || second === '--help' || second === '-h')) {
    if (second === undefined) {
      io.stderr(TRIGGER_HELP)
      return EXIT.usage
    }
    io.stdout(TRIGGER_HELP)
    return EXIT.ok
  }
  const command = find(argv)
  if (command === undefined) {
    const name = first === 'trigger' ? `trigger ${second ?? ''}` : first
    io.stderr(`herald: unknown command ${JSON.stringify(name)}\nRun 'herald --help' for the list.\n`)
    return EXIT.usage
  }
  const rest = argv.slice(command.name.split(' ').length)
  try {
    const parsed = parse(rest, command.options)
    if (parsed.values['help'] === true) {
      io.stdout(`${command.help}\n`)
      return EXIT.ok
    }
    return await command.run(parsed, io)
  } catch (error) {
    if (error instanceof UsageError || (isHeraldError(error) && INPUT_ERRORS.has(error.code))) {
      io.stderr(
        `herald ${command.name}: ${errorMessage(error)}\nRun 'herald ${command.name} --help' for usage.\n`,
      )
      return EXIT.usage
    }
    if (!(error instanceof CommandFailed) || error.message !== '') {
      io.stderr(`herald ${command.name}: ${errorMessage(error)}\n`)
    }
    return EXIT.failure
  }
}

function find(argv: readonly string[]): Command | undefined {
  const [first, second] = argv
  const name = first === 'trigger' ? `trigger ${second ?? ''}` : first
  return COMMANDS.find((command) => command.name === name)
}

function version(): string {
  // src/ and dist/ both sit one level below package.json.
  const manifest = createRequire(import.meta.url)('../package.json') as { version?: string }
  return manifest.version ?? 'unknown'
}
