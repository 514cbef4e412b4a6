/**
 * Where the CPU of Herald's hot paths goes, for when a figure in `pnpm bench` disappoints and
 * the question is which code to change. Not a benchmark (not in run.ts): each loop runs flat
 * out under the V8 sampling profiler, in this one process, against one server.
 *
 *   node --conditions=@herald/source --import tsx bench/profile.ts [loop...] [--throughput]
 *
 * Loops (all by default):
 * - publish: `herald.publish(channel, body)` of small JSON bodies from many concurrent
 *   callers, as a busy app would (the coalescing publisher merges what one round trip lets
 *   pile up).
 * - invalidate: `cache.invalidate(key)` from many concurrent callers (one message per tick).
 * - receive: the listening side of a stream of invalidations, one key per NOTIFY (the costly
 *   case per key): postgres.js's parse, Herald's envelope decode and dispatch, the cache's
 *   decode and eviction. The NOTIFYs come from `generate_series`, 2,000 per statement, sent
 *   by a child process (profile-sender.ts) so that none of the sending lands in this profile;
 *   each run caches its keys first (unprofiled), so every notification is a real eviction.
 * - get: `InvalidatingCache.get(key)` hits over 10,000 entries in a random order.
 *
 * Each loop is warmed up (unprofiled), then profiled for PROFILE_SECONDS (default 5): the
 * top functions by self time, with the owner a fix would have to change, are printed and the
 * profile is written to bench/results/profile/<loop>.cpuprofile (ignored by git; open it in
 * Chrome DevTools or VS Code). `--throughput` skips the profiler and prints the median rate
 * and this process's CPU per operation of PROFILE_REPETITIONS (default 5) runs instead, for
 * a before/after of a fix. Findings and figures: bench/PROFILE.md.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import type { Profiler } from 'node:inspector'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { Herald } from '@herald/core'
import { uniqueName } from '@herald/testing'
import type { FromSender, ToSender } from './profile-sender.js'
import { CpuProfiler, formatSummary, summarizeProfile } from './lib/cpu-profile.js'
import { Child } from './lib/child.js'
import { openCache } from './lib/open-cache.js'
import { benchServer } from './lib/postgres.js'
import { median } from './lib/stats.js'
import { makeUser, randomIndices, userKey } from './lib/users.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const OUT_DIR = fileURLToPath(new URL('results/profile/', import.meta.url))
const WARMUP_MS = 1_500
const MIN_RUN_MS = 100
const TOP = 12
/** Callers with a publish or invalidate in flight at once: enough to keep the publisher busy. */
const CONCURRENCY = 100
const SENDER = 'bench/profile-sender.ts'
/** Spawning it: tsx compiling, one connection. */
const SENDER_TIMEOUT_MS = 30_000
/** NOTIFYs per sending statement, and how far the sender may run ahead of the listener. */
const SEND_BATCH = 2_000
const MAX_LAG = 20_000
/**
 * Keys cached before each receive run, and so the notifications of one run. Evicting from a
 * cache of millions is bound by memory latency (lru-cache's delete: ~130 ns per key at 10,000
 * entries, ~820 ns at 1,500,000 on the reference machine): a mid-sized cache, refilled
 * between runs, keeps that cost where an app would see it.
 */
const RECEIVE_KEYS = 100_000
const GET_KEYS = 10_000
const GET_CHUNK = 100_000

interface Timed {
  readonly operations: number
  readonly ms: number
}

interface Run extends Timed {
  /** CPU time of this process (all its threads: GC helpers too), in ms. */
  readonly cpuMs: number
}

interface OpenLoop extends AsyncDisposable {
  /** Sets up a run (unprofiled, untimed). */
  prepare?(): void
  /** Runs the hot loop until `performance.now()` reaches `until`, or sooner if it runs out of work. */
  run(until: number): Promise<Timed>
  /** What a run left behind worth printing (evictions, hits). */
  note?(): string
}

interface Loop {
  readonly name: string
  readonly unit: string
  open(url: string): Promise<OpenLoop>
}

/** A small invalidation-shaped body: what most publishes look like. */
function body(i: number): { c: string; k: string[] } {
  return { c: 'users', k: [userKey(i)] }
}

/** `CONCURRENCY` callers, each awaiting its call before the next, until `until`. */
async function concurrently(until: number, call: (i: number) => Promise<void>): Promise<Timed> {
  const started = performance.now()
  let next = 0
  const worker = async (): Promise<void> => {
    while (performance.now() < until) await call(next++)
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  return { operations: next, ms: performance.now() - started }
}

const publish: Loop = {
  name: 'publish',
  unit: 'publishes',
  async open(url) {
    const herald = new Herald({ connection: url, applicationName: 'profile-publish' })
    herald.on('error', (error) => console.error(`publish: ${error.message}`))
    await herald.start()
    const channel = uniqueName('profile_publish')
    return {
      run: (until) => concurrently(until, (i) => herald.publish(channel, body(i))),
      note: () => {
        const { published, notifies } = herald.stats()
        return `${(published / notifies).toFixed(1)} messages per NOTIFY`
      },
      [Symbol.asyncDispose]: () => herald.close(),
    }
  },
}

const invalidate: Loop = {
  name: 'invalidate',
  unit: 'invalidations',
  async open(url) {
    const opened = await openCache(url, { applicationName: 'profile-invalidate', max: GET_KEYS })
    return {
      run: (until) => concurrently(until, (i) => opened.cache.invalidate(userKey(i))),
      note: () => {
        const { published, notifies } = opened.herald.stats()
        return `${(published / notifies).toFixed(1)} messages per NOTIFY`
      },
      [Symbol.asyncDispose]: () => opened[Symbol.asyncDispose](),
    }
  },
}

const receive: Loop = {
  name: 'receive',
  unit: 'notifications',
  async open(url) {
    const channel = uniqueName('profile_receive')
    const opened = await openCache(url, { applicationName: 'profile-receive', max: RECEIVE_KEYS, channel })
    const { herald, cache } = opened
    const sender = new Child<ToSender, FromSender>(SENDER)
    sender.send({ type: 'start', url, channel })
    await Promise.race([sender.receive('ready', SENDER_TIMEOUT_MS), opened.failure])
    let evicted = 0
    let received = 0
    return {
      prepare() {
        for (let id = 0; id < RECEIVE_KEYS; id++) cache.set(userKey(id), makeUser(id))
      },
      async run(until) {
        const started = performance.now()
        const sizeBefore = cache.size
        const base = herald.stats().notifications
        const lag = (): number => sent - (herald.stats().notifications - base)
        let sent = 0
        let inFlight = 0
        const replied = async (): Promise<void> => {
          await Promise.race([sender.receive('sent', SENDER_TIMEOUT_MS), opened.failure])
          inFlight--
        }
        // Two statements in flight (the listener never waits on the sender), none while the
        // listener is more than MAX_LAG behind (its socket buffer would grow without bound).
        while (performance.now() < until && sent < RECEIVE_KEYS) {
          if (inFlight === 2) await replied()
          else if (lag() > MAX_LAG) await sleep(1)
          else {
            const count = Math.min(SEND_BATCH, RECEIVE_KEYS - sent)
            sender.send({ type: 'send', from: sent, count })
            sent += count
            inFlight++
          }
        }
        while (inFlight > 0) await replied()
        while (lag() > 0) await sleep(1)
        evicted += sizeBefore - cache.size
        received += sent
        return { operations: sent, ms: performance.now() - started }
      },
      note: () => `${((evicted / received) * 100).toFixed(0)}% of notifications evicted a cached key`,
      [Symbol.asyncDispose]: async () => {
        sender.send({ type: 'stop' }, { last: true })
        await sender.close()
        await opened[Symbol.asyncDispose]()
      },
    }
  },
}

const get: Loop = {
  name: 'get',
  unit: 'gets',
  async open(url) {
    const opened = await openCache(url, { applicationName: 'profile-get', max: GET_KEYS })
    const { cache } = opened
    const keys = Array.from({ length: GET_KEYS }, (_, id) => userKey(id))
    for (const [id, key] of keys.entries()) cache.set(key, makeUser(id))
    const order = Array.from(randomIndices(GET_CHUNK, GET_KEYS), (index) => keys[index] as string)
    let hits = 0
    let gets = 0
    return {
      run(until) {
        const started = performance.now()
        let operations = 0
        while (performance.now() < until) {
          for (const key of order) if (cache.get(key) !== undefined) hits++
          operations += GET_CHUNK
        }
        gets += operations
        return Promise.resolve({ operations, ms: performance.now() - started })
      },
      note: () => `${((hits / gets) * 100).toFixed(0)}% hits`,
      [Symbol.asyncDispose]: () => opened[Symbol.asyncDispose](),
    }
  },
}

const LOOPS: readonly Loop[] = [publish, invalidate, receive, get]

function rate(run: Run): number {
  return (run.operations / run.ms) * 1000
}

function formatCpu(microseconds: number): string {
  return `${microseconds < 1 ? microseconds.toFixed(3) : microseconds.toFixed(2)} µs CPU per op`
}

function formatRate(perSecond: number, unit: string): string {
  return `${Math.round(perSecond).toLocaleString('en-US')} ${unit}/s`
}

/** Runs of the loop, `prepare`d before each, until their time adds up to `seconds`. */
async function runs(
  open: OpenLoop,
  seconds: number,
  around: (run: () => Promise<Run>) => Promise<Run>,
): Promise<Run[]> {
  const done: Run[] = []
  let elapsed = 0
  // A run ends a little short of its deadline (the profiler starts first): no sliver runs.
  while (elapsed < seconds * 1000 - MIN_RUN_MS) {
    open.prepare?.()
    const until = performance.now() + seconds * 1000 - elapsed
    const run = await around(async () => {
      const cpu = process.cpuUsage()
      const { operations, ms } = await open.run(until)
      const { user, system } = process.cpuUsage(cpu)
      return { operations, ms, cpuMs: (user + system) / 1000 }
    })
    done.push(run)
    elapsed += run.ms
  }
  return done
}

function total(done: readonly Run[]): Run {
  return done.reduce((sum, run) => ({
    operations: sum.operations + run.operations,
    ms: sum.ms + run.ms,
    cpuMs: sum.cpuMs + run.cpuMs,
  }))
}

/** This process's CPU per operation: unlike the rate, not capped by the server or the sender. */
function cpuPerOperation(run: Run): number {
  return (run.cpuMs * 1000) / run.operations
}

async function profileLoop(loop: Loop, open: OpenLoop, seconds: number): Promise<void> {
  const profiler = new CpuProfiler()
  const profiles: Profiler.Profile[] = []
  try {
    const done = await runs(open, seconds, async (run) => {
      const { result, profile } = await profiler.profile(run)
      profiles.push(profile)
      return result
    })
    const files = await Promise.all(
      profiles.map(async (profile, index) => {
        const file = `${OUT_DIR}${loop.name}${profiles.length > 1 ? `-${index + 1}` : ''}.cpuprofile`
        await writeFile(file, JSON.stringify(profile))
        return file.slice(ROOT.length)
      }),
    )
    const segments = profiles.length > 1 ? `, ${profiles.length} runs` : ''
    console.log(
      `\n${loop.name}: ${formatRate(rate(total(done)), loop.unit)} (${formatCpu(cpuPerOperation(total(done)))}) ` +
        `under the profiler${segments}; ${open.note?.() ?? ''}`,
    )
    console.log(formatSummary(summarizeProfile(profiles, ROOT), TOP))
    console.log(`  wrote ${files.length > 2 ? `${files[0]} … ${files.at(-1)}` : files.join(', ')}`)
  } finally {
    profiler.close()
  }
}

async function measureLoop(loop: Loop, open: OpenLoop, seconds: number, repetitions: number): Promise<void> {
  const rates: number[] = []
  const cpus: number[] = []
  for (let i = 0; i < repetitions; i++) {
    const run = total(await runs(open, seconds, (run) => run()))
    rates.push(rate(run))
    cpus.push(cpuPerOperation(run))
  }
  const sorted = [...rates].sort((a, b) => a - b)
  console.log(
    `${loop.name}: ${formatRate(median(rates), loop.unit)} median of ${repetitions} ` +
      `(min ${formatRate(sorted[0] ?? 0, '').trim()}, max ${formatRate(sorted.at(-1) ?? 0, '').trim()}), ` +
      `${formatCpu(median(cpus))}; ${open.note?.() ?? ''}`,
  )
}

function positive(name: string, fallback: number): number {
  const text = process.env[name]
  if (text === undefined || text === '') return fallback
  const value = Number(text)
  if (!(value > 0)) throw new Error(`${name} must be a positive number, got ${JSON.stringify(text)}`)
  return value
}

async function main(): Promise<void> {
  const args = process.argv.slice(2)
  const throughput = args.includes('--throughput')
  const names = args.filter((arg) => !arg.startsWith('--'))
  const unknown = names.filter((name) => !LOOPS.some((loop) => loop.name === name))
  if (unknown.length > 0)
    throw new Error(`unknown loop ${unknown.join(', ')}; known: ${LOOPS.map((l) => l.name).join(', ')}`)
  const selected = names.length === 0 ? LOOPS : LOOPS.filter((loop) => names.includes(loop.name))
  const seconds = positive('PROFILE_SECONDS', throughput ? 3 : 5)
  const repetitions = Math.round(positive('PROFILE_REPETITIONS', 5))
  await mkdir(OUT_DIR, { recursive: true })
  await using server = await benchServer()
  console.log(`PostgreSQL ${server.version} (${server.source}), Node ${process.version}`)
  for (const loop of selected) {
    await using open = await loop.open(server.url)
    // JIT, prepared statements, pool connections: none of it belongs in the profile.
    open.prepare?.()
    await open.run(performance.now() + WARMUP_MS)
    if (throughput) await measureLoop(loop, open, seconds, repetitions)
    else await profileLoop(loop, open, seconds)
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error('profile failed:', error)
    process.exit(1)
  },
)
