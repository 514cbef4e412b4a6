/**
 * The child side of a benchmark's IPC: messages to the parent, and a failure that reports
 * itself, shuts the child's resources down and lets the process exit non-zero.
 */
export function sendToParent<TMessage>(message: TMessage, then: () => void = () => {}): void {
  if (process.connected) process.send?.(message, then)
  else then()
}

/** A `fail(error)` for a child whose `shutdown` closes what it opened (idempotently). */
export function failureReporter(shutdown: () => Promise<void>): (error: unknown) => void {
  return (error) => {
    process.exitCode = 1
    sendToParent({ type: 'failed', message: error instanceof Error ? error.message : String(error) })
    void shutdown().finally(() => {
      if (process.connected) process.disconnect()
    })
  }
}
