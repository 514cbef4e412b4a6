/** Exit codes scripts can rely on. */
export const EXIT = {
  /** Done; for `doctor`, every check passed. */
  ok: 0,
  /** The command ran and failed: no connection, a query or a check failed. */
  failure: 1,
  /** The command line was wrong: unknown command or option, missing or malformed argument. */
  usage: 2,
} as const

export type ExitCode = (typeof EXIT)[keyof typeof EXIT]

/** Where a command reads its environment and writes its output: the process, or a test's buffers. */
export interface CliIo {
  /** Results: what a script pipes on. */
  readonly stdout: (text: string) => void
  /** Progress, warnings and errors. */
  readonly stderr: (text: string) => void
  /** `DATABASE_URL` and the `PG*` variables. */
  readonly env: Readonly<Record<string, string | undefined>>
  /** Aborted on SIGINT / SIGTERM: a long-running command (`listen`) stops and exits 0. */
  readonly signal: AbortSignal
}

/** A mistake in the command line: printed with a pointer to `--help`, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
}

/** A failure already explained to the user: exit code 1 without a stack trace. */
export class CommandFailed extends Error {
  override readonly name = 'CommandFailed'
}
