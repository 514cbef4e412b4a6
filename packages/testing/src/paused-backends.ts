import { orphanReaper } from './orphan-reaper.js'

const paused = new Set<number>()
let hooked = false

/*
 * A SIGSTOPped backend never exits, and the postmaster's shutdown waits for it: a Ctrl-C
 * or a vitest worker's SIGTERM would leave the server wedged (the reaper gives up on it
 * after 15 s). So the signal first wakes every paused backend, then does what it would
 * have done without a listener: end the process with that signal, after which the reaper
 * shuts the servers down.
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
      for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
        process.once(signal, () => {
          resumeAll()
          // Once this listener is gone, only other listeners can keep the process alive.
          if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
        })
      }
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
