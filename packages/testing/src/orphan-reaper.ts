import { spawn, type ChildProcess } from 'node:child_process'
import type { Socket } from 'node:net'

/**
 * What the reaper cleans up once this process is gone: postmasters get SIGQUIT
 * (immediate shutdown), paused backends SIGCONT first (a stopped backend never
 * exits, so its postmaster would wait for it forever), directories are removed
 * once the postmasters are gone.
 */
export type ReapKind = 'postmaster' | 'paused' | 'dir'

/*
 * An exit hook would cover a clean exit, but vitest stops a fork worker with
 * SIGTERM and SIGKILLs it 500 ms later, and a crash or an OOM kill runs no hook
 * at all: the postmaster would outlive us,
 * keep its port and its 40 MB data directory, and a SIGSTOPped backend would
 * block its shutdown for good. So a tiny node process holds the read end of a
 * pipe from us; the kernel closes our end however we die, and on EOF it cleans
 * up whatever we had not released yet.
 *
 * - It ignores SIGINT/SIGTERM/SIGHUP: Ctrl-C reaches the whole process group,
 *   and the reaper must outlive it to remove the directories.
 * - Before removing a directory it waits for every process started on it (its
 *   path is in their command line: `postgres -D dir`, `initdb --pgdata=dir`
 *   and initdb's bootstrap backend) and SIGQUITs them, then SIGKILLs after 5 s:
 *   an initdb killed midway kept writing into a directory removed under it.
 * - It signals a tracked postmaster only while the pid still names a live
 *   `postgres` (pid reuse; PID 1 here reaps nothing, so zombies linger), and
 *   gives up after 15 s so that a wedged server cannot keep it alive forever.
 */
const script = `
const fs = require('node:fs')
const sets = { postmaster: new Set(), paused: new Set(), dir: new Set() }
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(s, () => {})
const linux = fs.existsSync('/proc/self/stat')
const read = (pid, file) => fs.readFileSync('/proc/' + pid + '/' + file, 'utf8')
function livePostgres(pid) {
  if (!linux) { try { process.kill(pid, 0); return true } catch { return false } }
  try { return /^\\d+ \\(postgres\\) [^Z]/.test(read(pid, 'stat')) } catch { return false }
}
function holders() {
  const pids = new Set([...sets.postmaster].filter(livePostgres))
  if (!linux || sets.dir.size === 0) return pids
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      if (/^\\d+ \\(.*\\) Z/.test(read(entry, 'stat'))) continue
      const cmdline = read(entry, 'cmdline')
      for (const dir of sets.dir) if (cmdline.includes(dir)) pids.add(Number(entry))
    } catch {}
  }
  return pids
}
function signal(pid, name) { try { process.kill(pid, name) } catch {} }
let pending = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', (chunk) => {
  pending += chunk
  let end
  while ((end = pending.indexOf('\\n')) >= 0) {
    const line = pending.slice(0, end)
    pending = pending.slice(end + 1)
    try { const m = JSON.parse(line); const set = sets[m.kind]; if (set) m.add ? set.add(m.value) : set.delete(m.value) } catch {}
  }
})
let reaping = false
function reap() {
  if (reaping) return
  reaping = true
  for (const pid of sets.paused) if (livePostgres(pid)) signal(pid, 'SIGCONT')
  const started = Date.now()
  const quit = new Set()
  const tick = () => {
    const pids = holders()
    for (const pid of pids) {
      if (!quit.has(pid)) { quit.add(pid); signal(pid, 'SIGQUIT') }
      else if (Date.now() - started > 5000) signal(pid, 'SIGKILL')
    }
    if (pids.size > 0 && Date.now() - started < 15000) return setTimeout(tick, 20)
    for (const dir of sets.dir) { try { fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 }) } catch {} }
    process.exit(0)
  }
  tick()
}
process.stdin.on('end', reap)
process.stdin.on('error', reap)
`

let reaper: ChildProcess | undefined

function send(add: boolean, kind: ReapKind, value: number | string): void {
  if (!reaper) {
    // NODE_OPTIONS may load a TypeScript loader: not needed for a plain script.
    const { NODE_OPTIONS: _ignored, ...env } = process.env
    reaper = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'ignore', 'ignore'], env })
    reaper.on('error', () => {})
    reaper.stdin?.on('error', () => {})
    // Neither the process nor our end of its pipe may keep this process alive.
    reaper.unref()
    ;(reaper.stdin as Socket | null)?.unref()
  }
  reaper.stdin?.write(`${JSON.stringify({ add, kind, value })}\n`)
}

/** Cleans up after this process dies, unless released first. */
export const orphanReaper = {
  track(kind: ReapKind, value: number | string): void {
    send(true, kind, value)
  },
  release(kind: ReapKind, value: number | string): void {
    send(false, kind, value)
  },
}
