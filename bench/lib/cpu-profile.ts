import { Session, type Profiler } from 'node:inspector'
import { findSourceMap } from 'node:module'
import { relative } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * Finer than V8's default 1 ms: a loop of a few seconds then gets tens of thousands of
 * samples, enough to rank functions that take 1 % of it. Finer still and the sampler's own
 * cost starts to show in the figures.
 */
const SAMPLING_INTERVAL_US = 200

/**
 * The main thread's V8 CPU profiler, through an in-process inspector session. Starting it
 * takes a while (and is sampled): `profile` keeps only the samples taken while its work ran.
 */
export class CpuProfiler {
  readonly #session = new Session()
  #enabled = false

  constructor() {
    this.#session.connect()
  }

  async profile<T>(work: () => Promise<T>): Promise<{ result: T; profile: Profiler.Profile }> {
    if (!this.#enabled) {
      await this.#post('Profiler.enable')
      await this.#post('Profiler.setSamplingInterval', { interval: SAMPLING_INTERVAL_US })
      this.#enabled = true
    }
    await this.#post('Profiler.start')
    const from = monotonicMicroseconds()
    const result = await work()
    const to = monotonicMicroseconds()
    const { profile } = (await this.#post('Profiler.stop')) as Profiler.StopReturnType
    return { result, profile: trim(profile, from, to) }
  }

  close(): void {
    if (this.#enabled) void this.#post('Profiler.disable').catch(() => {})
    this.#session.disconnect()
  }

  #post(method: string, params?: object): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#session.post(method, params, (error, result) => (error ? reject(error) : resolve(result)))
    })
  }
}

/** V8 stamps samples with the monotonic clock in microseconds, as hrtime reads it in nanoseconds. */
function monotonicMicroseconds(): number {
  return Number(process.hrtime.bigint() / 1000n)
}

/** The profile with only the samples taken between `from` and `to`. */
function trim(profile: Profiler.Profile, from: number, to: number): Profiler.Profile {
  const samples: number[] = []
  const timeDeltas: number[] = []
  let time = profile.startTime
  let last = from
  ;(profile.samples ?? []).forEach((id, index) => {
    time += profile.timeDeltas?.[index] ?? 0
    if (time < from || time > to) return
    samples.push(id)
    timeDeltas.push(time - last)
    last = time
  })
  return { ...profile, startTime: from, endTime: to, samples, timeDeltas }
}

/** Who a sampled function belongs to: what a fix would have to change. */
export type Owner =
  | 'herald core'
  | 'herald lru'
  | 'bench'
  | 'postgres.js'
  | 'lru-cache'
  | 'eventemitter3'
  | 'node'
  | 'socket/pipe write'
  | 'V8 builtin'
  | 'GC'
  | 'V8 (program)'
  | 'other'

export interface HotSpot {
  readonly name: string
  /** `path:line` of the function's start, in the TypeScript source where a source map says so. */
  readonly location: string
  readonly owner: Owner
  readonly selfMs: number
  /** Share of the busy (not idle) time. */
  readonly share: number
}

export interface ProfileSummary {
  readonly totalMs: number
  readonly idleMs: number
  readonly busyMs: number
  readonly spots: readonly HotSpot[]
  readonly owners: readonly { readonly owner: Owner; readonly selfMs: number; readonly share: number }[]
}

/**
 * Self time per function (name + source line), over every node of the call tree, summed over
 * `profiles` (the runs of one loop). Paths are shown relative to `root`.
 */
export function summarizeProfile(profiles: readonly Profiler.Profile[], root: string): ProfileSummary {
  const byKey = new Map<string, { name: string; location: string; owner: Owner; selfMs: number }>()
  let idleMs = 0
  let totalMs = 0
  for (const profile of profiles) {
    const selfById = selfTimes(profile)
    for (const node of profile.nodes) {
      const selfMs = selfById.get(node.id) ?? 0
      totalMs += selfMs
      const { functionName, url } = node.callFrame
      if (functionName === '(idle)') {
        idleMs += selfMs
        continue
      }
      if (selfMs === 0) continue
      const location = locate(node.callFrame, root)
      const name = functionName === '' ? '(anonymous)' : functionName
      const key = `${name} ${location}`
      const spot = byKey.get(key) ?? { name, location, owner: ownerOf(functionName, url), selfMs: 0 }
      spot.selfMs += selfMs
      byKey.set(key, spot)
    }
  }
  const busyMs = totalMs - idleMs
  const spots = [...byKey.values()]
    .map((spot) => ({ ...spot, share: spot.selfMs / busyMs }))
    .sort((a, b) => b.selfMs - a.selfMs)
  const owners = new Map<Owner, number>()
  for (const spot of spots) owners.set(spot.owner, (owners.get(spot.owner) ?? 0) + spot.selfMs)
  return {
    totalMs,
    idleMs,
    busyMs,
    spots,
    owners: [...owners]
      .map(([owner, selfMs]) => ({ owner, selfMs, share: selfMs / busyMs }))
      .sort((a, b) => b.selfMs - a.selfMs),
  }
}

/**
 * A sample's time is the gap to the next one (what DevTools shows as self time); the last
 * sample gets the mean gap.
 */
function selfTimes(profile: Profiler.Profile): Map<number, number> {
  const samples = profile.samples ?? []
  const deltas = profile.timeDeltas ?? []
  const meanUs = samples.length === 0 ? 0 : (profile.endTime - profile.startTime) / samples.length
  const self = new Map<number, number>()
  samples.forEach((id, index) => {
    const us = deltas[index + 1] ?? meanUs
    self.set(id, (self.get(id) ?? 0) + us / 1000)
  })
  return self
}

function locate(frame: Profiler.ProfileNode['callFrame'], root: string): string {
  if (frame.url === '') return '(native)'
  let url = frame.url
  let line = frame.lineNumber + 1
  // tsx compiles with inline source maps: point at the line of the .ts file, not of its output.
  const entry = findSourceMap(url)?.findEntry(frame.lineNumber, frame.columnNumber)
  if (entry !== undefined && 'originalSource' in entry) {
    url = entry.originalSource
    line = entry.originalLine + 1
  }
  const path = url.startsWith('file:') ? fileURLToPath(url) : url
  const shown = path.startsWith(root) ? relative(root, path) : path
  return `${shown.replace(/^.*node_modules\/\.pnpm\/[^/]+\/node_modules\//, '')}:${line}`
}

const STREAM_WRITES = new Set([
  'writeBuffer',
  'writev',
  'writeUtf8String',
  'writeLatin1String',
  'writeAsciiString',
])

function ownerOf(functionName: string, url: string): Owner {
  if (functionName === '(garbage collector)') return 'GC'
  if (functionName === '(program)' || functionName === '(root)') return 'V8 (program)'
  // libuv stream writes: the time is the syscall, on a busy machine mostly waiting to be
  // scheduled again after it woke the server (or child) up.
  if (url === '' && STREAM_WRITES.has(functionName)) return 'socket/pipe write'
  if (url === '') return 'V8 builtin'
  if (url.startsWith('node:')) return 'node'
  if (url.includes('/node_modules/postgres/')) return 'postgres.js'
  if (url.includes('/node_modules/lru-cache/')) return 'lru-cache'
  if (url.includes('/node_modules/eventemitter3/')) return 'eventemitter3'
  if (url.includes('/packages/core/src/')) return 'herald core'
  if (url.includes('/packages/lru/src/')) return 'herald lru'
  if (url.includes('/bench/')) return 'bench'
  return 'other'
}

/** The top `count` functions by self time, and the split by owner, as a text table. */
export function formatSummary(summary: ProfileSummary, count: number): string {
  const pct = (share: number): string => `${(share * 100).toFixed(1)}%`.padStart(6)
  const ms = (value: number): string => value.toFixed(0).padStart(6)
  const top = summary.spots.slice(0, count)
  const nameWidth = Math.max(...top.map((spot) => spot.name.length), 8)
  const lines = [
    `  ${summary.busyMs.toFixed(0)} ms busy of ${summary.totalMs.toFixed(0)} ms sampled ` +
      `(${pct(summary.idleMs / summary.totalMs).trim()} idle); shares are of the busy time`,
    '',
    `  ${'self ms'.padStart(7)} ${'share'.padStart(6)}  ${'function'.padEnd(nameWidth)}  owner, where`,
    ...top.map(
      (spot) =>
        `  ${ms(spot.selfMs).padStart(7)} ${pct(spot.share)}  ${spot.name.padEnd(nameWidth)}  ${spot.owner}, ${spot.location}`,
    ),
    '',
    `  by owner: ${summary.owners.map(({ owner, share }) => `${owner} ${pct(share).trim()}`).join(', ')}`,
  ]
  return lines.join('\n')
}
